"""DOT text out of an SCM and back in: mechanisms travel as expression attributes.

:func:`to_dot` writes one DOT node per SCM node with its mechanism as an
attribute, plus Graphviz styling so the text renders as the usual causal
diagram; :func:`read_dot` parses DOT text (or a file) with
:mod:`causalppl.graph.dotparse` and rebuilds the SCM, surgery
included. Nothing in a DOT file is ever executed: mechanisms and values go
through the safe expression parser (:mod:`causalppl.graph.expr`).

Node attributes read and written:

``mechanism="Normal(weight, 0.75)"``
    the mechanism's expression text (required on every non-input node).
``latent=true``
    a node that is never observed.
``observed=9.5`` / ``intervened=9.0``
    the value of :meth:`SCM.condition` / :meth:`SCM.do`. A scalar is written
    as a number; a tensor is written in full as a nested list string
    (``observed="[1.0, 2.5, 0.0]"``) and read back as ``tensor([...])`` by the
    expression parser. Values read back have the default float dtype.
``input=true``
    a model input (such as ``guess``), drawn as a dashed ellipse; skipped on read.
``learnable='{...}'`` / ``params='{...}'``
    a learnable mechanism's spec and its fitted params, as JSON (parsed with
    :func:`json.loads`, never executed).
``labels='["no", "yes"]'``
    a discrete node's state labels (JSON).
``callable=true``
    written for a node whose mechanism is a Python callable: DOT cannot hold
    it, so the file keeps the structure only and :func:`read_dot` refuses it.
``shift="x + 1"`` / ``stochastic="Bernoulli(0.3)"`` / ``replaced="Normal(z, 0.5)"``
    a shift, stochastic intervention or mechanism replacement
    (:mod:`causalppl.graph.intervention`), as expression text; ``mechanism``
    stays the node's own, and the edges are those of the intervened graph.
    One given as a Python callable is marked ``callable_intervention=shift``
    (or ``stochastic``, ``replaced``), which :func:`read_dot` refuses.

A file in which no node has a mechanism is a causal DAG (a structure-only
SCM). The drawing's legend (``legend=true``) is skipped on read.

Everything else (``label``, ``style``, ``shape``, ``fillcolor``, ...) is
styling for Graphviz and ignored on read.

>>> import causalppl as cp
>>> scm = cp.SCM().add("weight", "Normal(guess, 1.0)").add("measurement", "Normal(weight, 0.75)")
>>> text = to_dot(scm.do(weight=9.0))
>>> 'intervened=9.0' in text, 'label="weight = 9.0"' in text
(True, True)
>>> back = read_dot(text)
>>> back.nodes, back.interventions
(('weight', 'measurement'), {'weight': tensor(9.)})
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import networkx as nx
import torch

from causalppl.graph.bulk import paused_gc
from causalppl.graph.dotparse import DotSyntaxError, parse_dot
from causalppl.graph.expr import Expression, ExpressionError
from causalppl.graph.mechanism import Unspecified, is_unspecified, mechanism_text
from causalppl.graph.scm import SCM, check_name, code_label
from causalppl.params import decode_constraint, encode_constraint

# Styling (Graphviz attributes). Kept here so to_dot's text renders as drawn.
OBSERVED_FILL = "#c6dbef"
INTERVENED_FILL = "#fdd0a2"
SHIFT_FILL = "#fee391"
STOCHASTIC_FILL = "#c7e9c0"
REPLACED_FILL = "#dadaeb"
SOFT_KEYS = ("shift", "stochastic", "replaced")
LATENT_COLOR = "grey45"
INPUT_COLOR = "grey35"

# DOT keywords (case-insensitive) must be quoted when used as node names.
_DOT_KEYWORDS = {"node", "edge", "graph", "digraph", "subgraph", "strict"}
_PLAIN_ID = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\Z")
_NUMERAL = re.compile(r"-?(\.[0-9]+|[0-9]+(\.[0-9]*)?)\Z")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}



# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def quote(text):
    """``text`` as a DOT ID: bare when it is a plain name or numeral, else a quoted string.

    Quoted strings escape backslash, double quote and newlines; :func:`unquote`
    undoes it.

    >>> quote("x"), quote("Normal(x, 1)"), quote('a "b"')
    ('x', '"Normal(x, 1)"', '"a \\\\"b\\\\""')
    """
    text = str(text)
    if (_PLAIN_ID.match(text) or _NUMERAL.match(text)) and text.lower() not in _DOT_KEYWORDS:
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def format_value(value):
    """An observed/intervened value as DOT attribute text (full precision; lists for tensors).

    >>> format_value(torch.tensor(9.5)), format_value(torch.tensor([1.0, 2.0]))
    ('9.5', '[1.0, 2.0]')
    """
    value = torch.as_tensor(value).detach()
    if value.dtype == torch.bool:
        value = value.to(torch.int64)
    return _format_list(value.cpu().tolist())


def _format_list(data):
    if isinstance(data, list):
        return "[" + ", ".join(_format_list(item) for item in data) + "]"
    if isinstance(data, float):
        if math.isnan(data):
            return "nan"
        if math.isinf(data):
            return "inf" if data > 0 else "-inf"
        return repr(data)
    return str(int(data))


def label_value(value, labels=None):
    """A short form of a value for a node label: ``9.0``, ``yes`` (a code of a labelled node),
    or ``[100 values]`` for a tensor.

    >>> label_value(torch.tensor(9.0)), label_value(torch.tensor(1.0), ("no", "yes"))
    ('9.0', 'yes')
    """
    label = code_label(labels, value)
    if label is not None:
        return str(label)
    value = torch.as_tensor(value).detach()
    if value.numel() == 1:
        number = float(value.reshape(()))
        text = f"{number:.6g}"
        if text.lstrip("-").isdigit():
            text += ".0"  # 9 -> 9.0: reads as a value, not a count
        return text
    return f"[{value.numel()} values]"


def _attr_text(attrs):
    return ", ".join(f"{key}={value}" for key, value in attrs.items())


def _soft_text(scm, node):
    """``(key, text)`` of a node's shift, stochastic intervention and replacement (text ``None``: a callable)."""
    from causalppl.graph.intervention import distribution_text
    from causalppl.graph.mechanism import FixedDistribution

    found = []
    replaced = scm.replaced.get(node)
    if replaced is not None:
        text = replaced.mechanism.text
        if text is None and isinstance(replaced.mechanism.fn, FixedDistribution):
            text = distribution_text(replaced.mechanism.fn.distribution)
        found.append(("replaced", text, replaced))
    soft = scm._soft.get(node)
    if soft is not None:
        found.append((soft.kind, soft.text, soft))
    return found


def _node_attrs(scm, node, show, fitted):
    """The DOT attributes of one node: its mechanism (or learnable spec and params) and its styling."""
    mechanism = scm._mechanisms[node]  # its own mechanism; shifts and replacements are attributes
    attrs, notes = {}, []
    if mechanism.text is not None:
        attrs["mechanism"] = quote(mechanism.text)
    elif is_unspecified(mechanism):
        pass  # a causal DAG: structure only
    elif callable(getattr(mechanism.fn, "spec", None)):
        attrs["learnable"] = quote(json.dumps(mechanism.fn.spec()))
        params = {key: {"value": value.detach().cpu().tolist(), "constraint": encode_constraint(key, constraint)}
                  for key, value, constraint in _node_params(scm, node)}
        if params:
            attrs["params"] = quote(json.dumps(params))
    else:
        attrs["callable"] = "true"
        attrs["comment"] = quote(f"{mechanism!r} is Python code; DOT holds the structure only")
        notes.append(f"// node '{node}' has a Python callable mechanism ({mechanism!r}): "
                     "this file holds its structure only and cannot be read back")
    if node in scm._labels:
        attrs["labels"] = quote(json.dumps(list(scm._labels[node])))
    styles = []
    label = None
    if show == "mechanisms":
        text = mechanism_text(mechanism)
        label = f"{node}\n{text}" if text else node
    if node in scm.latent:
        attrs["latent"] = "true"
        styles.append("dotted")
        attrs["color"] = attrs["fontcolor"] = LATENT_COLOR
    if node in fitted:
        attrs["penwidth"] = "2"
        attrs["peripheries"] = "2"
    observed, interventions = scm.observed, scm.interventions
    if node in observed:
        attrs["observed"] = quote(format_value(observed[node]))
        label = f"{node} = {label_value(observed[node], scm.labels(node))}"
        attrs["fillcolor"] = quote(OBSERVED_FILL)
        styles.insert(0, "filled")
    for key, text, intervention in _soft_text(scm, node):
        if text is not None:
            attrs[key] = quote(text)
        else:
            attrs["callable_intervention"] = key
            notes.append(f"// node '{node}' has a Python callable {intervention.kind} ({intervention.describe()}): "
                         "this file cannot be read back with it")
        shown = intervention.describe()
        if key == "replaced":
            label = f"{node} ~ {shown}"
            attrs["fillcolor"] = quote(REPLACED_FILL)
            styles[:0] = ["filled", "bold"]
        elif key == "shift":
            label = f"{node} := {shown}"
            attrs["shape"] = "box"
            attrs["fillcolor"] = quote(SHIFT_FILL)
            styles[:] = [style for style in styles if style not in ("filled", "bold")]
            styles[:0] = ["filled", "rounded"]
        else:
            label = f"{node} ~ {shown}"
            attrs["shape"] = "box"
            attrs["fillcolor"] = quote(STOCHASTIC_FILL)
            styles[:] = [style for style in styles if style not in ("filled", "bold")]
            styles[:0] = ["filled", "dashed"]
    if node in interventions:
        attrs["intervened"] = quote(format_value(interventions[node]))
        label = f"{node} = {label_value(interventions[node], scm.labels(node))}"
        attrs["shape"] = "box"
        attrs["fillcolor"] = quote(INTERVENED_FILL)
        styles.insert(0, "filled")
    if label is not None:
        attrs["label"] = quote(label)
    if styles:
        attrs["style"] = quote(",".join(styles))
    return attrs, notes


def _node_params(scm, node):
    """``(name, value, constraint)`` of the params in ``scm.params`` that belong to ``node``."""
    store = scm.params
    prefix = f"{node}."
    return [(key, store[key], store.get_constraint(key)) for key in store.keys() if key.startswith(prefix)]


def fitted_columns(scm):
    """The nodes that were data columns in the SCM's last fit (an empty set if it was not fitted)."""
    record = scm._state.fit
    data = record.get("data") if isinstance(record, dict) else None
    if data is None:
        return set()
    names = data.columns if hasattr(data, "columns") else data.keys() if hasattr(data, "keys") else ()
    return {str(name) for name in names} & set(scm.nodes)


def _legend(scm, fitted):
    """DOT lines of a legend cluster explaining the styles (its nodes and edges carry ``legend=true``)."""
    entries = [
        ("legend_observed", "observed", f'style=filled, fillcolor="{OBSERVED_FILL}"'),
        ("legend_intervened", "intervened: do() cut\\nits incoming edges",
         f'shape=box, style=filled, fillcolor="{INTERVENED_FILL}"'),
        ("legend_latent", "latent", f"style=dotted, color={LATENT_COLOR}, fontcolor={LATENT_COLOR}"),
    ]
    kinds = {key for node in scm.nodes for key, _, _ in _soft_text(scm, node)}
    if "shift" in kinds:
        entries.append(("legend_shift", "shift: a function of\\nits natural value",
                        f'shape=box, style="filled,rounded", fillcolor="{SHIFT_FILL}"'))
    if "stochastic" in kinds:
        entries.append(("legend_stochastic", "stochastic: drawn afresh,\\nits incoming edges cut",
                        f'shape=box, style="filled,dashed", fillcolor="{STOCHASTIC_FILL}"'))
    if "replaced" in kinds:
        entries.append(("legend_replaced", "mechanism replaced",
                        f'style="filled,bold", fillcolor="{REPLACED_FILL}"'))
    if fitted:
        entries.append(("legend_fitted", "data column (fitted)", "penwidth=2, peripheries=2"))
    if scm.inputs:
        entries.append(("legend_input", "model input", f"style=dashed, color={INPUT_COLOR}"))
    lines = ["subgraph cluster_legend {", 'label="legend"; fontsize=10; color=grey70; style=rounded;',
             "node [legend=true, fontsize=10]; edge [legend=true];"]
    lines += [f'{name} [label="{text}", {style}];' for name, text, style in entries]
    lines.append("}")
    return lines


def to_dot(scm, name=None, rankdir=None, show=None, legend=False):
    """DOT text of ``scm``: nodes in topological order with their mechanisms and surgery.

    Parameters
    ----------
    scm : SCM
    name : str, optional
        The DOT graph's name (default: the name a file gave, else ``scm``).
    rankdir : str, optional
        Graphviz layout direction, ``"LR"``, ``"TB"``, ``"RL"`` or ``"BT"``
        (default: the ``rankdir`` of the file the SCM was read from, else ``"LR"``).
    show : None or "mechanisms"
        ``"mechanisms"`` writes each node's mechanism under its name in its label.
    legend : bool
        Add a legend cluster that explains the styles (drawings use it;
        :func:`read_dot` skips it).

    Returns
    -------
    str
        DOT text that :func:`read_dot` reads back into an equal SCM: expression
        mechanisms as ``mechanism="..."``; learnable ones as their spec and
        fitted params in JSON (``learnable='{...}'``, ``params='{...}'``). A node with a
        Python callable mechanism is marked ``callable=true`` with no
        ``mechanism``, and a comment says that it cannot be read back.

    Examples
    --------
    >>> import causalppl as cp
    >>> print(to_dot(cp.SCM().add("z", "Normal(0, 1)").add("x", "Normal(z, 1)")))
    // causalppl SCM; read it back with causalppl.read_dot
    digraph scm {
    rankdir=LR;
    node [shape=ellipse];
    z [mechanism="Normal(0, 1)"];
    x [mechanism="Normal(z, 1)"];
    z -> x;
    }
    <BLANKLINE>
    """
    if not isinstance(scm, SCM):
        raise TypeError(f"to_dot needs an SCM, got {type(scm).__name__}")
    rankdir = rankdir if rankdir is not None else scm._meta.get("rankdir", "LR")
    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"rankdir must be one of LR, TB, RL, BT; got {rankdir!r}")
    if show not in (None, "mechanisms"):
        raise ValueError(f"show must be None or 'mechanisms', got {show!r}")
    name = name if name is not None else scm._meta.get("name", "scm")
    fitted = fitted_columns(scm)
    header = ["// causalppl SCM; read it back with causalppl.read_dot"]
    body = [f"digraph {quote(name)} {{", f"rankdir={rankdir};", "node [shape=ellipse];"]
    for node in scm.inputs:
        body.append(f"{quote(node)} [input=true, style=dashed, color={INPUT_COLOR}, fontcolor={INPUT_COLOR}];")
    for node in scm.nodes:
        attrs, notes = _node_attrs(scm, node, show, fitted)
        header += notes
        body.append(f"{quote(node)} [{_attr_text(attrs)}];" if attrs else f"{quote(node)};")
    interventions = scm.interventions
    for node in scm.nodes:
        if node in interventions:
            continue  # do() cut its incoming edges, inputs included
        for parent in scm.mechanism(node).parents:
            if parent in scm.inputs:
                body.append(f"{quote(parent)} -> {quote(node)} [style=dashed, color={INPUT_COLOR}];")
    for parent, child in scm.graph.edges:
        body.append(f"{quote(parent)} -> {quote(child)};")
    if legend:
        body += _legend(scm, fitted)
    body.append("}")
    return "\n".join(header + body) + "\n"


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def unquote(text):
    """The string a DOT ID stands for: quotes removed, escapes undone (inverse of :func:`quote`)."""
    text = str(text)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        escapes = {"n": "\n", "r": "\r", '"': '"', "\\": "\\", "\n": ""}
        return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(0)), text[1:-1], flags=re.S)
    return text


def _source_text(path_or_text, what="read_dot", kind="DOT"):
    """``(text, where)``: the text and how errors refer to it (a file's name, or ``DOT text``)."""
    if isinstance(path_or_text, Path):
        return read_text_file(path_or_text, what, kind)
    if not isinstance(path_or_text, str):
        raise TypeError(f"{what} needs a path or {kind} text, got {type(path_or_text).__name__}")
    if not path_or_text.strip():
        raise ValueError(f"{what}: got an empty string; expected a path to a {kind} file or {kind} text")
    if any(mark in path_or_text for mark in "{[<\n"):  # graphs have braces or brackets; no sensible path does
        return path_or_text, f"{kind} text"
    return read_text_file(Path(path_or_text), what, kind)


def read_text_file(path, what="read_dot", kind="DOT"):
    """``(text, where)`` of a UTF-8 file (a byte-order mark is dropped); errors name the file."""
    path = Path(path)
    where = f"{kind} file '{path}'"
    if path.is_dir():
        raise IsADirectoryError(f"{what}: '{path}' is a folder, not a {kind} file")
    try:
        return path.read_text(encoding="utf-8-sig"), where
    except FileNotFoundError:
        raise FileNotFoundError(f"{what}: no such file '{path}'") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
                         f"{err.start})") from None
    except OSError as err:
        raise ValueError(f"{what}: cannot read '{path}': {err.strerror or err}") from None


def _parse(text, where):
    """The one directed graph in ``text`` (a :class:`DotGraph`); errors name the line and column."""
    try:
        graph = parse_dot(text)
    except DotSyntaxError as err:
        place, _, message = str(err).rpartition("column ")
        if place:  # "line 3, column 8: expected ..." -> "<where>: line 3, column 8: not valid DOT: expected ..."
            number, _, message = message.partition(": ")
            raise ValueError(f"{where}: {place}column {number}: not valid DOT: {message}") from None
        raise ValueError(f"{where}: not valid DOT: {err}") from None
    if not graph.directed:
        raise ValueError(f"{where}: an SCM is a directed graph; write 'digraph {{ ... }}', not 'graph'")
    return graph


def _node_name(raw, where, what="node"):
    """The node name a DOT ID stands for, checked as ``SCM.add`` checks names (``e``, ``pi``, ``exp``,
    ``Normal``, ... are refused: expressions would read them as the constant or the function)."""
    name = unquote(raw)
    if not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"{where}: {what} name {name!r} is not allowed: SCM node names must be "
                         "Python identifiers not starting with '_'")
    try:
        check_name(name, what)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return name


def _flag(attrs, key, node, where):
    if key not in attrs:
        return False
    text = attrs[key].strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{where}: node '{node}': {key}={attrs[key]!r} must be true or false")


def parse_value(text, node, key, where):
    """An observed/intervened attribute value: a number or a nested list, via the safe parser.

    >>> parse_value("[1, 2.5]", "x", "observed", "DOT text")
    tensor([1.0000, 2.5000])
    """
    allowed = {"nan": math.nan, "inf": math.inf}
    try:
        expr = Expression(f"tensor({text})")
        extra = [name for name in expr.names if name not in allowed]
        if extra:
            raise ExpressionError(f"names ({', '.join(extra)}) are not values")
        value = expr(**{name: allowed[name] for name in expr.names})
    except ExpressionError as err:
        raise ValueError(f"{where}: node '{node}': {key}={text!r} must be a number or a nested list "
                         f"of numbers ({err})") from None
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{where}: node '{node}': {key}={text!r} must be a number or a nested list "
                         "of numbers")
    if not value.is_floating_point():
        value = value.to(torch.get_default_dtype())
    return value


def read_dot(path_or_text):
    """Read an SCM, or a causal DAG, from a DOT file or DOT text (parsed, never executed).

    Parameters
    ----------
    path_or_text : str or pathlib.Path
        A path to an existing file, or DOT text (anything containing ``{``).

    Returns
    -------
    SCM
        With ``do`` / ``condition`` surgery restored from ``intervened`` /
        ``observed`` attributes. A file where no node has a ``mechanism`` (a
        plain ``digraph { a -> b }``) gives a structure-only SCM: a causal DAG
        that identification, drawing and :meth:`SCM.from_graph` take, and
        whose queries say that they need mechanisms. ``node [...]`` /
        ``edge [...]`` defaults apply; the file's ``rankdir`` is kept for drawings.

    Raises
    ------
    ValueError
        Malformed DOT (with the line and column), a node name that is not an
        identifier, some nodes with a mechanism and others without, a node
        whose mechanism was a Python callable, an edge to an undefined node,
        an ``input`` node with a mechanism, or edges that disagree with the
        mechanisms. :class:`ExpressionError` (a ``ValueError``) for a
        mechanism the safe expression parser refuses.
    networkx.NetworkXUnfeasible
        A cycle, named.
    FileNotFoundError
        ``path_or_text`` is neither an existing file nor DOT text.

    Examples
    --------
    >>> scm = read_dot('digraph { z [mechanism="Normal(0, 1)"]; x [mechanism="Normal(z, 1)"]; z -> x; }')
    >>> scm.nodes, scm.parents("x")
    (('z', 'x'), ('z',))
    >>> dag = read_dot("digraph { node [latent=true]; u; node [latent=false]; u -> x -> y; u -> y }")
    >>> dag.nodes, dag.latent, dag.specified
    (('u', 'x', 'y'), frozenset({'u'}), False)
    """
    text, where = _source_text(path_or_text)
    with paused_gc():  # a 100,000-node file: see causalppl.graph.bulk
        return scm_from_dot_graph(_parse(text, where), where)


def scm_from_dot_graph(graph, where):
    """The SCM (or structure-only SCM) a parsed :class:`DotGraph` describes; see :func:`read_dot`."""
    attributes, names = {}, {}  # names: DOT ID -> node name, each checked once
    for raw, attrs in graph.nodes.items():
        if _flag(attrs, "legend", raw, where):
            continue  # the drawing's legend
        names[raw] = _node_name(raw, where)
        attributes[names[raw]] = attrs

    def name_of(raw):
        found = names.get(raw)
        return found if found is not None else _node_name(raw, where, "edge endpoint")

    edges = [(name_of(s), name_of(t), attrs) for s, t, attrs in graph.edges
             if not ("legend" in attrs and _flag(attrs, "legend", s, where))]
    structural = not any("mechanism" in attrs or "learnable" in attrs or _flag(attrs, "input", n, where)
                         or _flag(attrs, "callable", n, where) for n, attrs in attributes.items())
    if structural:
        scm = _structure(attributes, edges, where)
    else:
        scm = _with_mechanisms(attributes, edges, where)
    meta = {key: graph.attrs[key] for key in ("rankdir",) if key in graph.attrs}
    if graph.name:
        meta["name"] = graph.name
    return with_meta(scm, meta)


def with_meta(scm, meta):
    """``scm`` with graph-level facts from a file (``rankdir``, ``name``, ``roles``) recorded."""
    scm._meta.update({key: value for key, value in meta.items() if value})
    scm._cache.clear()
    return scm


def _soft_surgery(scm, attributes, where):
    """Replacements, then shifts and stochastic interventions, from their expression attributes."""
    replaced, soft = {}, {}
    for name, attrs in attributes.items():
        if name not in scm:
            continue
        if "callable_intervention" in attrs:
            raise ValueError(f"{where}: node '{name}' had a Python callable {unquote(attrs['callable_intervention'])}, "
                             "which DOT cannot hold; write it as an expression (such as shift=\"x + 1\")")
        if "replaced" in attrs:
            replaced[name] = attrs["replaced"]
        for key in ("shift", "stochastic"):
            if key in attrs:
                soft[name] = attrs[key]
    try:
        if replaced:
            scm = scm.replace(**replaced)
        if soft:
            scm = scm.do(**soft)
    except ExpressionError as err:
        raise ExpressionError(f"{where}: {err}") from None
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return scm


def _soft_parents(name, attrs, parents, nodes, where):
    """The parents a node's edges must show: its mechanism's, as its replacement, shift or stochastic
    intervention changes them."""
    def names(key):
        try:
            return [p for p in Expression(attrs[key]).names if p in nodes and p != name]
        except ExpressionError as err:
            raise ExpressionError(f"{where}: node '{name}': {key}: {err}") from None

    used = set(parents)
    if "replaced" in attrs:
        used = set(names("replaced"))
    if "shift" in attrs:
        used |= set(names("shift"))
    if "stochastic" in attrs:
        used = set(names("stochastic"))
    return used


def _surgery(scm, attributes, where):
    scm = _soft_surgery(scm, attributes, where)
    interventions, observed = {}, {}
    for name, attrs in attributes.items():
        for key, store in (("observed", observed), ("intervened", interventions)):
            if key in attrs and name in scm:
                store[name] = parse_value(attrs[key], name, key, where)
    if interventions:
        scm = scm.do(**interventions)
    if observed:
        scm = scm.condition(**observed)
    return scm


def _structure(attributes, edges, where):
    """A structure-only SCM (every mechanism :class:`Unspecified`) from nodes and edges."""
    parents = {name: {} for name in attributes}
    for source, target, _ in edges:
        parents[target][source] = None
    mechanisms = {name: Unspecified(name, parents[name]) for name in attributes}
    latent = {name for name, attrs in attributes.items() if _flag(attrs, "latent", name, where)}
    return _surgery(_build(mechanisms, latent, attributes, where), attributes, where)


def _build(mechanisms, latent, attributes, where):
    """The SCM of node -> mechanism (its edges are the mechanisms' parents); errors name ``where``."""
    labels = {}
    for name in mechanisms:
        labels.update(_labels_of(attributes[name], name, where))
    try:
        return SCM._from_parts(mechanisms, latent, labels)
    except nx.NetworkXUnfeasible as err:
        raise nx.NetworkXUnfeasible(f"{where}: {err}") from None
    except ValueError as err:
        raise type(err)(f"{where}: {err}") from None


def build_scm(dag, where):
    """``SCM(dag)`` with a cycle named after ``where`` (a file, or ``DOT text``)."""
    for node in dag.nodes:
        if dag.has_edge(node, node):
            raise nx.NetworkXUnfeasible(f"{where}: node '{node}' has an edge to itself (cycle {node} -> {node})")
    if not nx.is_directed_acyclic_graph(dag):
        cycle = nx.find_cycle(dag)
        path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
        raise nx.NetworkXUnfeasible(f"{where}: the graph has the cycle {path}")
    try:
        return SCM(dag)
    except ValueError as err:
        raise type(err)(f"{where}: {err}") from None


def _labels_of(attrs, name, where):
    """``{name: labels}`` from a ``labels`` attribute, or ``{}``."""
    if "labels" not in attrs:
        return {}
    try:
        labels = json.loads(attrs["labels"])
    except ValueError:
        labels = None
    if not isinstance(labels, list):
        raise ValueError(f"{where}: node '{name}': labels={attrs['labels']!r} must be a JSON list "
                         'such as ["no", "yes"]')
    return {name: tuple(labels)}


def _learnable(attrs, name, where):
    """The learnable mechanism of a ``learnable='{json spec}'`` attribute, and its ``params``."""
    from causalppl.causal.learnable import mechanism_from_spec  # graph/ must not import causal/ eagerly

    try:
        mechanism = mechanism_from_spec(json.loads(attrs["learnable"]))
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"{where}: node '{name}': learnable={attrs['learnable']!r} is not a learnable "
                         f"mechanism's spec ({err})") from None
    params = {}
    if "params" in attrs:
        try:
            for key, entry in json.loads(attrs["params"]).items():
                params[key] = (torch.tensor(entry["value"], dtype=torch.get_default_dtype()),
                               decode_constraint(key, entry["constraint"]))
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ValueError(f"{where}: node '{name}': params={attrs['params']!r} must be JSON "
                             f'{{"name": {{"value": ..., "constraint": ...}}}} ({err})') from None
    return mechanism, params


def _parents_of(mechanism):
    return mechanism.names if isinstance(mechanism, Expression) else mechanism.parents


def _with_mechanisms(attributes, edges, where):
    inputs, mechanisms, latent, params = set(), {}, set(), {}
    for name, attrs in attributes.items():
        if _flag(attrs, "input", name, where):
            if "mechanism" in attrs:
                raise ValueError(f"{where}: node '{name}' is marked input=true but has a mechanism; "
                                 "an input is given when the model is called, a node has a mechanism")
            inputs.add(name)
            continue
        if "learnable" in attrs:
            mechanisms[name], found = _learnable(attrs, name, where)
            params.update(found)
        elif "mechanism" in attrs:
            try:
                mechanisms[name] = Expression(attrs["mechanism"])
            except ExpressionError as err:
                raise ExpressionError(f"{where}: node '{name}': {err}") from None
        elif _flag(attrs, "callable", name, where):
            raise ValueError(f"{where}: node '{name}' had a Python callable mechanism, which DOT cannot "
                             "hold; give it an expression mechanism=\"...\" or rebuild it with SCM.add")
        else:
            raise ValueError(f"{where}: node '{name}' has no mechanism attribute "
                             "(write e.g. mechanism=\"Normal(0, 1)\", or input=true for a model input; "
                             "or leave out every mechanism for a causal DAG)")
        if _flag(attrs, "latent", name, where):
            latent.add(name)

    declared = {name: set() for name in mechanisms}
    for source, target, _ in edges:
        _add_edge(source, target, declared, mechanisms, inputs, where)

    interventions = {name for name, attrs in attributes.items() if "intervened" in attrs}
    for name, mechanism in mechanisms.items():
        used = {p for p in _parents_of(mechanism) if p in mechanisms}
        used = _soft_parents(name, attributes[name], used, mechanisms, where)
        if name in interventions and not declared[name]:
            continue  # do() cut the incoming edges
        if declared[name] != used:
            extra, missing = sorted(declared[name] - used), sorted(used - declared[name])
            problems = []
            if extra:
                problems.append(f"edges from {extra} that its mechanism does not use")
            if missing:
                problems.append(f"no edges from {missing} although its mechanism uses them")
            raise ValueError(f"{where}: node '{name}': the file has {' and '.join(problems)} "
                             f"(mechanism {mechanism.text!r} uses {list(_parents_of(mechanism))})")

    scm = _build(mechanisms, latent, attributes, where)
    for key, (value, constraint) in params.items():
        scm.params.get_param(key, value, constraint)
    return _surgery(scm, attributes, where)


def _add_edge(source, target, declared, mechanisms, inputs, where):
    for end in (source, target):
        if end not in mechanisms and end not in inputs:
            raise ValueError(f"{where}: edge {source} -> {target}: '{end}' is not defined; declare it as a "
                             f"node with a mechanism (or input=true): {end} [mechanism=\"...\"]")
    if target in inputs:
        raise ValueError(f"{where}: edge {source} -> {target}: '{target}' is an input, which has no parents")
    if source in inputs:
        if source not in _parents_of(mechanisms[target]):
            raise ValueError(f"{where}: edge {source} -> {target}: the mechanism of '{target}' "
                             f"({mechanisms[target].text!r}) does not use the input '{source}'")
        return
    declared[target].add(source)
