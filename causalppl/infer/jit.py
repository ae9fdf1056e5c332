"""Pyro's JIT ELBOs: the loss captured once as a graph of tensor ops, then replayed.

``JitTrace_ELBO`` and ``JitTraceMeanField_ELBO`` compute the loss of their
eager classes. For each model, guide and argument signature (the shapes,
dtypes and devices of the tensor arguments, also inside lists, tuples and
dicts; the values of the others):

1. the first call runs eagerly: it creates the params and, with validation
   on, checks every distribution;
2. the second captures the loss as a function of the params and the tensor
   arguments (``torch.fx``'s ``make_fx``: the tensor ops that ran, with no
   handlers, sites or distribution objects left), runs the capture on the
   random numbers the eager loss drew and checks that it gives the same loss;
3. later calls replay the capture. Its random draws (noise, subsampled rows)
   are fresh at every call and come in the eager order, so a seeded run
   gives the eager numbers. ``loss_and_grads`` replays the forward and the
   backward as one graph (captured over ``torch.autograd.grad`` and checked
   against autograd), adding the gradients into ``.grad`` with no autograd
   graph built, after the rewrites of :mod:`causalppl.infer.graph_rewrites`
   (constants folded, ``detach`` copies dropped, sums of products as dots);
   ``differentiable_loss`` replays the forward for autograd.

What is captured is what ran, as with Pyro's ``torch.jit`` version: a program
whose sites, shapes or Python branches change from call to call must use the
eager class, and tensors it reads that are neither arguments nor params (a
global data tensor, say) are captured as they were: pass data as arguments.
A program whose Python reads tensor values (``if x.sum() > 0``, ``.item()``)
cannot be captured; it runs eagerly, with a warning that says why
(``ignore_jit_warnings=True`` silences it, as it silences Pyro's tracer).
``JitTraceGraph_ELBO`` keeps its baselines as Python state between steps,
so it runs eagerly.

``jit_options={"compile": True}`` also compiles the capture with
``torch.compile`` (with torch's random ops kept, so the numbers stay the
eager ones): a fused step, after a compilation of seconds. Where no compiler
works, a warning says so and the capture is replayed uncompiled.

>>> import torch, causalppl as cp
>>> def model(x):
...     z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
...     with cp.plate("rows", len(x)):
...         cp.sample("x", cp.dist.Normal(z, 1.0), obs=x)
>>> def guide(x):
...     cp.sample("z", cp.dist.Normal(cp.param("loc", torch.tensor(0.0)), 1.0))
>>> def fit(elbo):
...     cp.clear_param_store(); cp.set_rng_seed(0)
...     svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": 0.05}), elbo)
...     return [svi.step(torch.ones(10)) for _ in range(200)]
>>> elbo = JitTrace_ELBO()
>>> fit(elbo) == fit(cp.infer.Trace_ELBO()), elbo.compiled_calls  # the same numbers; 199 steps replayed
(True, 199)
"""

from __future__ import annotations

import contextlib
import math
import warnings
import weakref

import torch

from causalppl.infer.elbo import Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from causalppl.infer.graph_rewrites import simplify
from causalppl.infer.svi import _unchecked_arguments
from causalppl.params import store_holding

# "compile" is ours; the rest are torch.jit.trace's keywords that Pyro scripts pass.
_JIT_OPTIONS = {"compile", "check_trace", "check_inputs", "check_tolerance", "strict", "optimize"}
_MAX_SIGNATURES = 64  # signatures remembered, captures included; the oldest are forgotten beyond it


class _Capture:
    """One captured loss: ``graph(*leaves, *tensor_args)`` is the surrogate loss; ``traces`` the capture's traces."""

    def __init__(self, graph, names, leaves, traces):
        self.graph, self.names, self.leaves, self.traces = graph, names, leaves, traces
        # ``joint(*leaves, *tensor_args)`` -> (loss, gradient per target): forward and backward in one graph
        self.joint = None
        # Each leaf's store (the global one or a param_scope's), held weakly.
        stores = [store_holding(name, leaf) for name, leaf in zip(names, leaves, strict=True)]
        self.stores = [None if store is None else weakref.ref(store) for store in stores]

    def current(self):
        """Whether the stores still hold the captured leaves (a cleared or reloaded store does not)."""
        for name, leaf, ref in zip(self.names, self.leaves, self.stores, strict=True):
            store = None if ref is None else ref()
            if store is None or store._leaves.get(name) is not leaf:
                return False
        return True


class _CapturedLoss:
    """The capture-and-replay machinery, mixed into an eager ELBO class (see the module docstring)."""

    def __init__(self, *args, ignore_jit_warnings=False, jit_options=None, **kwargs):
        super().__init__(*args, ignore_jit_warnings=ignore_jit_warnings, jit_options=jit_options, **kwargs)
        self.ignore_jit_warnings = ignore_jit_warnings
        self.jit_options = dict(jit_options or {})
        unknown = sorted(set(self.jit_options) - _JIT_OPTIONS)
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown jit_options {unknown}; expected some of "
                             f"{sorted(_JIT_OPTIONS)} ('compile' here, the rest are torch.jit.trace's, for Pyro "
                             "scripts, and change nothing)")
        self._captures = {}  # signature -> "seen" (ran once, eagerly), a _Capture, or None (stays eager)
        self.compiled_calls = 0  # calls answered by a replay

    # -- the three losses ------------------------------------------------------

    def loss_and_grads(self, model, guide, *args, **kwargs):
        surrogate = self._replayed(model, guide, args, kwargs, joint=True)
        if surrogate is None:
            return super().loss_and_grads(model, guide, *args, **kwargs)
        if isinstance(surrogate, float):  # the joint graph ran: gradients are in place
            return surrogate
        if surrogate.requires_grad:
            surrogate.backward(retain_graph=self.retain_graph)
        return surrogate.item()

    def differentiable_loss(self, model, guide, *args, **kwargs):
        surrogate = self._replayed(model, guide, args, kwargs)
        if surrogate is None:
            return super().differentiable_loss(model, guide, *args, **kwargs)
        return surrogate

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            surrogate = self._replayed(model, guide, args, kwargs)
        if surrogate is None:
            return super().loss(model, guide, *args, **kwargs)
        return surrogate.item()

    # -- capturing and replaying -------------------------------------------------

    def _replayed(self, model, guide, args, kwargs, joint=False):
        """This call's surrogate loss from a replay, or None where the call runs eagerly.

        With ``joint=True`` and a joint graph captured, the gradients are
        accumulated into the targets' ``.grad`` and the loss is a float.
        """
        key, tensors = _signature(model, guide, args, kwargs)
        if key not in self._captures:
            while len(self._captures) >= _MAX_SIGNATURES:  # arguments that keep changing: forget the oldest
                del self._captures[next(iter(self._captures))]
            self._captures[key] = "seen"  # this first call runs eagerly; the next one is captured
            return None
        capture = self._captures[key]
        if capture is None:
            return None
        if capture == "seen" or not capture.current():
            return self._capture(key, model, guide, args, kwargs, tensors)
        state = _rng_state()
        if joint and capture.joint is not None:
            result = value = self._joint_step(capture, tensors)
        else:
            result = capture.graph(*capture.leaves, *tensors)
            value = result.item()
        self.compiled_calls += 1
        self.last_traces = capture.traces
        if not math.isfinite(value):
            self._rerun_eagerly(state, model, guide, args, kwargs)  # real traces, to name the culprit site
        return result

    def _capture(self, key, model, guide, args, kwargs, tensors):
        """Capture the loss of this signature, check it against the eager loss, and return this call's value."""
        try:
            from torch.fx.experimental.proxy_tensor import make_fx
        except ImportError as err:  # pragma: no cover - torch without torch.fx
            return self._give_up(key, f"torch.fx is missing ({err})")
        state = _rng_state()
        with torch.no_grad(), _unchecked_arguments():  # the loss to match; its traces name the params
            expected = super().differentiable_loss(model, guide, *args, **kwargs)
        names, leaves = _param_leaves(self.last_traces)

        def surrogate_of(*inputs):  # the inputs are the very leaves and tensors the program reads
            return super(_CapturedLoss, self).differentiable_loss(model, guide, *args, **kwargs)

        _set_rng_state(state)
        try:
            with _unchecked_arguments(), _values_unchecked(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                graph = make_fx(surrogate_of)(*leaves, *tensors)
        except Exception as err:  # noqa: BLE001 - any failure to capture means: run eagerly
            _set_rng_state(state)
            return self._give_up(key, _first_lines(err))
        traces = self.last_traces
        graph.graph.eliminate_dead_code()  # the detached copies the eager code made and dropped
        graph.recompile()
        _set_rng_state(state)
        surrogate = graph(*leaves, *tensors)
        if not _same_loss(surrogate.detach(), expected):
            _set_rng_state(state)
            return self._give_up(key, f"the captured loss {surrogate.item()} differs from the eager "
                                      f"loss {float(expected)} on the same random numbers")
        capture = _Capture(graph, names, leaves, traces)
        if self.jit_options.get("compile") and torch.is_grad_enabled():
            compiled, surrogate = self._compiled(graph, surrogate, state, leaves, tensors, expected)
            capture.graph = graph if compiled is None else compiled
        elif torch.is_grad_enabled() and surrogate.requires_grad:
            capture.joint = _joint_graph(make_fx, graph, surrogate, state, leaves, tensors)
        self._captures[key] = capture
        self.last_traces = traces
        self.compiled_calls += 1
        return surrogate

    def _compiled(self, graph, surrogate, state, leaves, tensors, expected):
        """``torch.compile`` of the capture, checked like the capture; ``(None, surrogate)`` if it cannot be had."""
        after = _rng_state()
        try:
            import torch._inductor.config as inductor_config

            compiled = torch.compile(graph, dynamic=False)
            _set_rng_state(state)
            with inductor_config.patch(fallback_random=True):  # eager's random ops, so the same numbers
                value = compiled(*leaves, *tensors)
        except Exception as err:  # noqa: BLE001 - no compiler, an unsupported op, ...: replay uncompiled
            why = _first_lines(err)
        else:
            if _same_loss(value.detach(), expected):
                return compiled, value
            why = f"the compiled loss {value.item()} differs from the eager loss {float(expected)}"
        _set_rng_state(after)
        if not self.ignore_jit_warnings:
            warnings.warn(f"{type(self).__name__}: torch.compile was not used ({why}); the capture is replayed "
                          "uncompiled", RuntimeWarning, stacklevel=6)
        return None, surrogate

    @staticmethod
    def _joint_step(capture, tensors):
        """Replay forward and backward in one graph; add each gradient to its target's ``.grad``."""
        graph, targets = capture.joint
        with torch.no_grad():
            loss, *grads = graph(*capture.leaves, *tensors)
            for target, grad in zip(targets(capture.leaves, tensors), grads, strict=True):
                if grad is None:
                    continue
                if target.grad is None:
                    target.grad = grad if grad.is_contiguous() and grad.shape == target.shape else (
                        grad.expand(target.shape).contiguous())
                else:
                    target.grad += grad
        return loss.item()

    def _give_up(self, key, why):
        self._captures[key] = None
        if not self.ignore_jit_warnings:
            warnings.warn(f"{type(self).__name__}: the loss could not be captured ({why}); it runs eagerly",
                          RuntimeWarning, stacklevel=5)
        return None

    def _rerun_eagerly(self, state, model, guide, args, kwargs):
        after = _rng_state()
        _set_rng_state(state)
        with torch.no_grad(), _unchecked_arguments():
            super().differentiable_loss(model, guide, *args, **kwargs)
        _set_rng_state(after)


def _joint_graph(make_fx, graph, surrogate, state, leaves, tensors):
    """The forward and backward of ``graph`` captured as one graph, checked against autograd; None if not.

    Its targets are the param leaves and the tensor arguments that require
    grad: what ``backward`` would reach. A capture whose constants require
    grad (a module's weights read as constants) keeps autograd, which reaches them.
    """
    for node in graph.graph.nodes:
        if node.op == "get_attr" and getattr(getattr(graph, node.target), "requires_grad", False):
            return None
    picks = [i for i, t in enumerate(tensors) if t.requires_grad]
    count = len(leaves)

    def targets(leaves, tensors):
        return [*leaves, *(tensors[i] for i in picks)]

    def joint(*inputs):
        loss = graph(*inputs)
        wrt = [*inputs[:count], *(inputs[count + i] for i in picks)]
        return (loss.detach(), *torch.autograd.grad(loss, wrt, allow_unused=True))

    after = _rng_state()
    wanted = torch.autograd.grad(surrogate, targets(leaves, tensors), retain_graph=True, allow_unused=True)
    try:
        _set_rng_state(state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            joint_graph = simplify(make_fx(joint)(*leaves, *tensors), no_grad=True)
        _set_rng_state(state)
        with torch.no_grad():
            loss, *grads = joint_graph(*leaves, *tensors)
    except Exception:  # noqa: BLE001 - the forward replay with autograd still works
        return None
    finally:
        _set_rng_state(after)
    for got, want in zip(grads, wanted, strict=True):
        if (got is None) != (want is None) or (got is not None and not torch.allclose(
                got.expand(want.shape), want, rtol=1e-5, atol=1e-6 * max(1.0, float(want.abs().max())))):
            return None
    if not _same_loss(loss, surrogate.detach()):
        return None
    return joint_graph, targets


@contextlib.contextmanager
def _values_unchecked():
    """No checks of values against supports while capturing.

    Distributions made before the step (a prior built once, outside the
    model) keep the validation they were made with; their checks read tensor
    values, which a capture cannot do. The eager first call checked them.
    """
    check = torch.distributions.Distribution._validate_sample
    torch.distributions.Distribution._validate_sample = _no_check
    try:
        yield
    finally:
        torch.distributions.Distribution._validate_sample = check


def _no_check(self, value):
    return None


def _first_lines(err, limit=300):
    """An exception as one short line: its type and the start of its message."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return f"{type(err).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _rng_state():
    """The random number generators' states: the CPU's and, once CUDA is in use, every GPU's."""
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None


def _set_rng_state(state):
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _signature(model, guide, args, kwargs):
    """What a capture is valid for, and the tensors it takes as inputs.

    The program, the grad mode and the arguments: tensors (also inside
    lists, tuples and dicts) by shape, dtype and device, as inputs of the
    capture; anything else by value, or by identity where it has no hashable
    value. Returns ``(signature, tensors)``.
    """
    tensors, parts = [], []
    _flatten(args, tensors, parts)
    _flatten(kwargs, tensors, parts)
    return (id(model), id(guide), torch.is_grad_enabled(), tuple(parts)), tensors


def _flatten(value, tensors, parts):
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        parts.append(("tensor", tuple(value.shape), value.dtype, value.device, value.requires_grad))
    elif type(value) in (list, tuple):
        parts.append((type(value), len(value)))
        for item in value:
            _flatten(item, tensors, parts)
    elif type(value) is dict:
        parts.append((dict, tuple(value)))
        for item in value.values():
            _flatten(item, tensors, parts)
    else:
        try:
            hash(value)
        except TypeError:
            parts.append(("object", id(value)))
        else:
            parts.append(("value", type(value), value))


def _param_leaves(traces):
    """The names and unconstrained leaves of the params the traces read, each once, in order."""
    names, leaves, seen = [], [], set()
    for _, tr in traces:
        for name, site in tr.nodes.items():
            if site["type"] != "param" or name in seen or not hasattr(site["value"], "unconstrained"):
                continue
            leaf = site["value"].unconstrained()
            if leaf is not None:
                seen.add(name)
                names.append(name)
                leaves.append(leaf)
    return names, leaves


def _same_loss(got, expected):
    expected = torch.as_tensor(expected, dtype=got.dtype, device=got.device)
    tolerance = 1e-5 * max(1.0, float(expected.abs()))
    return bool((got - expected).abs() <= tolerance) or (not torch.isfinite(expected) and bool(got == expected))


class JitTrace_ELBO(_CapturedLoss, Trace_ELBO):
    """:class:`Trace_ELBO`, captured once and replayed (see the module docstring)."""


class JitTraceMeanField_ELBO(_CapturedLoss, TraceMeanField_ELBO):
    """:class:`TraceMeanField_ELBO`, captured once and replayed (see the module docstring)."""


class JitTraceGraph_ELBO(TraceGraph_ELBO):
    """:class:`TraceGraph_ELBO`, under Pyro's JIT name; eager, since its baselines are state between steps."""
