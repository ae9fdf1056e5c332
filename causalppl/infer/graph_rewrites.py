"""Rewrites of a captured ``torch.fx`` graph that keep every value it computes, with fewer ops.

A captured SVI step (``JitTrace_ELBO``'s joint forward-and-backward graph)
is a flat list of aten calls, replayed once per step. On small tensors each
call costs more in dispatch than in arithmetic, and a capture carries calls
that the replay does not need:

- constants recomputed at every replay: the backward's seed
  ``ones_like(loss)`` and its scalar multiples, a broadcast number
  ``expand`` -ed to the rows. Calls that read no input, draw no random
  number and write nothing are run once, here, and become constants;
- ``detach`` copies, which change nothing in a graph replayed under
  ``torch.no_grad``, and views to the shape a tensor already has;
- ``sum(a * b)`` over tensors of one shape: one ``dot``, with no temporary;
- a chain of 0-dim ``add(total, term, alpha=c)`` (an ELBO summing its
  sites): one ``stack`` and one ``dot`` with the coefficients.

:func:`simplify` applies them all. The caller checks the result against the
eager values, as it checks the capture itself.

>>> import torch
>>> from torch.fx.experimental.proxy_tensor import make_fx
>>> def step(x, y):
...     total = (x * y).sum()
...     return total * torch.ones_like(total).mul(2.0)
>>> graph = make_fx(step)(torch.ones(3), torch.ones(3))
>>> rewritten = simplify(graph, no_grad=True)
>>> rewritten(torch.ones(3), torch.full((3,), 2.0))
tensor(12.)
>>> sorted({str(node.target) for node in rewritten.graph.nodes if node.op == "call_function"})
['aten.dot.default', 'aten.mul.Tensor']
"""

from __future__ import annotations

import torch
from torch.fx.node import map_arg

aten = torch.ops.aten

# Ops whose result depends on their tensor argument's shape, dtype, device and strides only.
_SHAPE_ONLY = {aten.ones_like.default, aten.zeros_like.default, aten.full_like.default,
               aten.new_ones.default, aten.new_zeros.default, aten.new_full.default}
_MAX_FOLDED_BYTES = 1 << 22  # a folded constant is kept in memory for the graph's life
_MIN_CHAIN = 4  # adds in a chain before it is worth a stack and a dot


def simplify(graph_module, no_grad):
    """Apply every rewrite to ``graph_module`` in place and return it, recompiled.

    ``no_grad=True`` says the graph is only ever replayed without autograd,
    which lets ``detach`` calls go.
    """
    graph = graph_module.graph
    _drop_aliases(graph, no_grad)
    _fold_constants(graph_module)
    _dots_of_products(graph)
    _stacked_add_chains(graph_module)
    graph.eliminate_dead_code()
    graph.lint()
    graph_module.recompile()
    return graph_module


def _value(node):
    return node.meta.get("val") if isinstance(node, torch.fx.Node) else None


def _is_op(node, *targets):
    return isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target in targets


def _not_output(user):
    # What the graph returns stays a tensor of its own, not an alias of another value.
    return user.op != "output"


def _drop_aliases(graph, no_grad):
    """Uses of ``detach(x)`` (under ``no_grad`` only) and of a view of ``x`` to its own shape and strides read ``x``."""
    for node in list(graph.nodes):
        if no_grad and _is_op(node, aten.detach.default, aten.alias.default):
            node.replace_all_uses_with(node.args[0], delete_user_cb=_not_output)
        elif _is_op(node, aten.view.default, aten.reshape.default, aten._unsafe_view.default):
            base, value = _value(node.args[0]), _value(node)
            if base is not None and value is not None and (base.shape, base.stride()) == (value.shape, value.stride()):
                node.replace_all_uses_with(node.args[0], delete_user_cb=_not_output)


def _schema(node):
    return getattr(node.target, "_schema", None) if node.op == "call_function" else None


def _written(graph):
    """Nodes that some call writes to, and every node they are views of: these are never folded."""
    written = set()
    for node in graph.nodes:
        schema = _schema(node)
        if schema is None or not schema.is_mutable:
            continue
        for argument, value in zip(schema.arguments, node.args):
            if argument.alias_info is not None and argument.alias_info.is_write and isinstance(value, torch.fx.Node):
                written.add(value)
    pending = list(written)
    while pending:  # a view shares its base's memory: writing the view writes the base
        node = pending.pop()
        schema = _schema(node)
        if schema is not None and schema.returns and schema.returns[0].alias_info is not None:
            base = node.args[0] if node.args else None
            if isinstance(base, torch.fx.Node) and base not in written:
                written.add(base)
                pending.append(base)
    return written


def _foldable_op(node):
    if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
        return False
    schema = node.target._schema
    uninitialised = schema.name.split("::")[-1].lstrip("_").startswith(("empty", "new_empty"))
    return not (schema.is_mutable or uninitialised or torch.Tag.nondeterministic_seeded in node.target.tags)


def _fold_constants(graph_module):
    """Run, once, every call whose value is fixed at capture; its uses read the result as a constant."""
    graph = graph_module.graph
    written = _written(graph)
    constants = {}
    for node in graph.nodes:
        if node.op == "get_attr":
            value = getattr(graph_module, node.target, None)
            if isinstance(value, torch.Tensor) and not value.requires_grad and node not in written:
                constants[node] = value
            continue
        if not _foldable_op(node) or node in written:
            continue
        inputs = node.all_input_nodes
        if node.target in _SHAPE_ONLY and inputs and inputs[0] is node.args[0]:
            like = _value(node.args[0])
            if like is None:
                continue
            stand_in = torch.empty_strided(like.shape, like.stride(), dtype=like.dtype, device=like.device)
            known = {node.args[0]: stand_in, **{n: constants.get(n) for n in inputs[1:]}}
        else:
            known = {n: constants.get(n) for n in inputs}
        if any(value is None for value in known.values()):
            continue
        try:
            with torch.no_grad():
                value = node.target(*map_arg(node.args, known.__getitem__), **map_arg(node.kwargs, known.__getitem__))
        except Exception:  # noqa: BLE001 - a call that cannot run on its own here stays in the graph
            continue
        if not isinstance(value, torch.Tensor) or value.untyped_storage().nbytes() > _MAX_FOLDED_BYTES:
            continue
        name = f"_folded_{len(constants)}"
        while hasattr(graph_module, name):
            name += "_"
        graph_module.register_buffer(name, value, persistent=False)
        with graph.inserting_before(node):
            constant = graph.get_attr(name)
        constant.meta = dict(node.meta)
        node.replace_all_uses_with(constant)
        constants[constant] = value
    _fresh_outputs(graph, constants)


def _fresh_outputs(graph, constants):
    """What the graph returns is a fresh tensor of its own: a caller may add to it in place."""
    output = next(node for node in graph.nodes if node.op == "output")

    def fresh(arg):
        if arg not in constants:
            return arg
        with graph.inserting_before(output):
            copy = graph.call_function(aten.clone.default, (arg,))
        copy.meta = dict(arg.meta)
        return copy

    output.args = map_arg(output.args, fresh)


def _same_layout(a, b):
    return (a is not None and b is not None and a.shape == b.shape and a.dtype == b.dtype
            and a.dtype.is_floating_point and a.device == b.device and a.dim() >= 1
            and a.is_contiguous() and b.is_contiguous())


def _dots_of_products(graph):
    """``sum(mul(a, b))`` over two tensors of one contiguous shape -> ``dot`` of their flat views."""
    for node in list(graph.nodes):
        if not (_is_op(node, aten.sum.default) and len(node.args) == 1 and not node.kwargs):
            continue
        product = node.args[0]
        if not (_is_op(product, aten.mul.Tensor) and len(product.users) == 1 and not product.kwargs):
            continue
        a, b = product.args
        if not (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node) and _same_layout(_value(a), _value(b))):
            continue
        with graph.inserting_before(node):
            if _value(a).dim() > 1:
                a, b = (graph.call_function(aten.view.default, (operand, [-1])) for operand in (a, b))
            dot = graph.call_function(aten.dot.default, (a, b))
        dot.meta = dict(node.meta)
        node.replace_all_uses_with(dot)
        graph.erase_node(node)
        graph.erase_node(product)


def _scalar_like(node, first):
    value = _value(node)
    return (value is not None and value.dim() == 0 and value.dtype == first.dtype and value.device == first.device)


def _chain_link(node):
    """``(total, term, alpha)`` of a 0-dim ``add(total, term, alpha=...)`` of two tensors, else None."""
    if not (_is_op(node, aten.add.Tensor) and len(node.args) == 2):
        return None
    total, term = node.args
    alpha = node.kwargs.get("alpha", 1)
    if set(node.kwargs) - {"alpha"} or not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        return None
    if not (isinstance(total, torch.fx.Node) and isinstance(term, torch.fx.Node)):
        return None
    value = _value(node)
    if value is None or value.dim() != 0 or not value.dtype.is_floating_point:
        return None
    if not (_scalar_like(total, value) and _scalar_like(term, value)):
        return None
    return total, term, float(alpha)


def _stacked_add_chains(graph_module):
    """A chain ``t0 + c1 t1 + c2 t2 + ...`` of 0-dim adds -> ``dot(stack([t0, t1, ...]), [1, c1, c2, ...])``."""
    graph = graph_module.graph
    erased = set()
    for tail in reversed(list(graph.nodes)):
        if tail in erased or _chain_link(tail) is None:
            continue  # a link of a chain rewritten already, or not an add
        links, node = [], tail
        while (link := _chain_link(node)) is not None:
            links.append((node, link))
            total = link[0]
            if len(total.users) != 1 or _chain_link(total) is None:
                break
            node = total
        if len(links) < _MIN_CHAIN:
            continue
        links.reverse()
        terms = [links[0][1][0]] + [term for _, (_, term, _) in links]
        coefficients = [1.0] + [alpha for _, (_, _, alpha) in links]
        value = _value(tail)
        name = f"_chain_coefficients_{tail.name}"
        graph_module.register_buffer(name, torch.tensor(coefficients, dtype=value.dtype, device=value.device),
                                     persistent=False)
        with graph.inserting_before(tail):
            stacked = graph.call_function(aten.stack.default, (terms,))
            weights = graph.get_attr(name)
            dot = graph.call_function(aten.dot.default, (stacked, weights))
        dot.meta = dict(tail.meta)
        tail.replace_all_uses_with(dot)
        for link_node, _ in reversed(links):
            graph.erase_node(link_node)
            erased.add(link_node)
