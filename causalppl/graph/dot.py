"""DOT text out of an SCM and back in: mechanisms travel as expression attributes.

:func:`to_dot` writes one DOT node per SCM node with its mechanism as an
attribute, plus Graphviz styling so the text renders as the usual causal
diagram; :func:`read_dot` parses DOT text (or a file) with pydot and rebuilds
the SCM, surgery included. Nothing in a DOT file is ever executed: mechanisms
and values go through the safe expression parser (:mod:`causalppl.graph.expr`).

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
``callable=true``
    written for a node whose mechanism is a Python callable: DOT cannot hold
    it, so the file keeps the structure only and :func:`read_dot` refuses it.

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

import io
import math
import re
import threading
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import networkx as nx
import pydot
import torch

from causalppl.graph.expr import Expression, ExpressionError
from causalppl.graph.scm import SCM, code_label

# Styling (Graphviz attributes). Kept here so to_dot's text renders as drawn.
OBSERVED_FILL = "#c6dbef"
INTERVENED_FILL = "#fdd0a2"
LATENT_COLOR = "grey45"
INPUT_COLOR = "grey35"

# DOT keywords (case-insensitive) must be quoted when used as node names.
_DOT_KEYWORDS = {"node", "edge", "graph", "digraph", "subgraph", "strict"}
_PLAIN_ID = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\Z")
_NUMERAL = re.compile(r"-?(\.[0-9]+|[0-9]+(\.[0-9]*)?)\Z")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}

# pyparsing's parser (pydot's) is not thread-safe.
_PARSE_LOCK = threading.Lock()


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


def to_dot(scm, name="scm", rankdir="LR"):
    """DOT text of ``scm``: nodes in topological order with their mechanisms and surgery.

    Parameters
    ----------
    scm : SCM
    name : str
        The DOT graph's name.
    rankdir : str
        Graphviz layout direction, ``"LR"`` (default) or ``"TB"``.

    Returns
    -------
    str
        DOT text that :func:`read_dot` reads back into an equal SCM, unless a
        node has a Python callable mechanism (then it is marked
        ``callable=true`` with no ``mechanism``, and a comment says so).

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
    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"rankdir must be one of LR, TB, RL, BT; got {rankdir!r}")
    graph = pydot.Dot(quote(name), graph_type="digraph")
    graph.set("rankdir", rankdir)
    graph.add_node(pydot.Node("node", shape="ellipse"))  # the default node style
    header = ["// causalppl SCM; read it back with causalppl.read_dot"]

    for node in scm.inputs:
        graph.add_node(pydot.Node(quote(node), input="true", style="dashed",
                                  color=INPUT_COLOR, fontcolor=INPUT_COLOR))

    observed, interventions, latent = scm.observed, scm.interventions, scm.latent
    for node in scm.nodes:
        mechanism = scm.mechanism(node)
        attrs = {}
        if mechanism.text is not None:
            attrs["mechanism"] = quote(mechanism.text)
        else:
            attrs["callable"] = "true"
            attrs["comment"] = quote(f"{mechanism!r} is Python code; DOT holds the structure only")
            header.append(f"// node '{node}' has a Python callable mechanism ({mechanism!r}): "
                          "this file holds its structure only and cannot be read back")
        styles = []
        if node in latent:
            attrs["latent"] = "true"
            styles.append("dotted")
            attrs["color"] = attrs["fontcolor"] = LATENT_COLOR
        if node in observed:
            attrs["observed"] = quote(format_value(observed[node]))
            attrs["label"] = quote(f"{node} = {label_value(observed[node], scm.labels(node))}")
            attrs["fillcolor"] = quote(OBSERVED_FILL)
            styles.insert(0, "filled")
        if node in interventions:
            attrs["intervened"] = quote(format_value(interventions[node]))
            attrs["label"] = quote(f"{node} = {label_value(interventions[node], scm.labels(node))}")
            attrs["shape"] = "box"
            attrs["fillcolor"] = quote(INTERVENED_FILL)
            styles.insert(0, "filled")
        if styles:
            attrs["style"] = quote(",".join(styles))
        graph.add_node(pydot.Node(quote(node), **attrs))

    for node in scm.nodes:
        if node in interventions:
            continue  # do() cut its incoming edges, inputs included
        for parent in scm.mechanism(node).parents:
            if parent in scm.inputs:
                graph.add_edge(pydot.Edge(quote(parent), quote(node), style="dashed", color=INPUT_COLOR))
    for parent, child in scm.graph.edges:
        graph.add_edge(pydot.Edge(quote(parent), quote(child)))
    return "\n".join(header) + "\n" + graph.to_string()


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


def _source_text(path_or_text):
    """``(text, where)``: the DOT text and how errors refer to it."""
    if isinstance(path_or_text, Path):
        return _read_file(path_or_text)
    if not isinstance(path_or_text, str):
        raise TypeError(f"read_dot needs a path or DOT text, got {type(path_or_text).__name__}")
    if "{" in path_or_text:  # every DOT graph has a brace; no sensible path does
        return path_or_text, "DOT text"
    return _read_file(Path(path_or_text))


def _read_file(path):
    try:
        return path.read_text(encoding="utf-8"), f"DOT file '{path}'"
    except FileNotFoundError:
        raise FileNotFoundError(
            f"read_dot: no such file '{path}' (and the text is not DOT: it has no '{{')") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"read_dot: cannot read '{path}': {err}") from err


def _graph_parser():
    """pydot's pyparsing grammar (its import warns about pyparsing deprecations: not ours to fix)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import pydot.dot_parser
        except ImportError:
            return None
    return getattr(pydot.dot_parser, "GraphParser", None)


def _parse(text, where):
    """The one pydot graph in ``text``; parse errors become ``ValueError`` with line and column."""
    parser = _graph_parser()
    with _PARSE_LOCK:
        if parser is not None and hasattr(parser, "parser"):
            from pyparsing import ParseBaseException

            try:
                graphs = list(parser.parser.parse_string(text, parse_all=True))
            except ParseBaseException as err:
                raise ValueError(f"{where}: line {err.lineno}, column {err.col}: "
                                 f"not valid DOT: {err.msg}") from None
            except RecursionError:
                raise ValueError(f"{where}: not valid DOT: nested too deeply") from None
        else:  # an older pydot: it prints the parse error and returns None
            with redirect_stdout(io.StringIO()) as printed:
                graphs = pydot.graph_from_dot_data(text)
            if graphs is None:
                raise ValueError(f"{where}: not valid DOT: {printed.getvalue().strip()}")
    if len(graphs) != 1:
        raise ValueError(f"{where}: expected exactly one graph, found {len(graphs)}")
    graph = graphs[0]
    if graph.get_type() != "digraph":
        raise ValueError(f"{where}: an SCM is a directed graph; write 'digraph {{ ... }}', "
                         f"not '{graph.get_type()}'")
    return graph


def _walk(graph):
    """The graph and its subgraphs (clusters), depth first."""
    yield graph
    for sub in graph.get_subgraphs():
        yield from _walk(sub)


def _node_name(raw, where, what="node"):
    name = unquote(raw)
    if not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"{where}: {what} name {name!r} is not allowed: SCM node names must be "
                         "Python identifiers not starting with '_'")
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
    """Read an SCM from a DOT file or DOT text (parsed with pydot, never executed).

    Parameters
    ----------
    path_or_text : str or pathlib.Path
        A path to an existing file, or DOT text (anything containing ``{``).

    Returns
    -------
    SCM
        With ``do`` / ``condition`` surgery restored from ``intervened`` /
        ``observed`` attributes.

    Raises
    ------
    ValueError
        Malformed DOT (with the line and column pydot reports), a node name
        that is not an identifier, a node without a mechanism, a node whose
        mechanism was a Python callable, an edge to an undefined node, an
        ``input`` node with a mechanism, or edges that disagree with the
        mechanisms. :class:`ExpressionError` (a ``ValueError``) for a
        mechanism the safe expression parser refuses.
    FileNotFoundError
        ``path_or_text`` is neither an existing file nor DOT text.

    Examples
    --------
    >>> scm = read_dot('digraph { z [mechanism="Normal(0, 1)"]; x [mechanism="Normal(z, 1)"]; z -> x; }')
    >>> scm.nodes, scm.parents("x")
    (('z', 'x'), ('z',))
    """
    text, where = _source_text(path_or_text)
    graph = _parse(text, where)

    attributes = {}  # node -> merged attributes, in file order
    for sub in _walk(graph):
        for node in sub.get_nodes():
            raw = node.get_name()
            if raw in ("node", "edge", "graph"):  # default-attribute statements
                continue
            name = _node_name(raw, where)
            merged = attributes.setdefault(name, {})
            merged.update({key: unquote(value) for key, value in node.get_attributes().items()})

    inputs, mechanisms, latent, observed, interventions = set(), {}, set(), {}, {}
    for name, attrs in attributes.items():
        if _flag(attrs, "input", name, where):
            if "mechanism" in attrs:
                raise ValueError(f"{where}: node '{name}' is marked input=true but has a mechanism; "
                                 "an input is given when the model is called, a node has a mechanism")
            inputs.add(name)
            continue
        if "mechanism" not in attrs:
            if _flag(attrs, "callable", name, where):
                raise ValueError(f"{where}: node '{name}' had a Python callable mechanism, which DOT cannot "
                                 "hold; give it an expression mechanism=\"...\" or rebuild it with SCM.add")
            raise ValueError(f"{where}: node '{name}' has no mechanism attribute "
                             "(write e.g. mechanism=\"Normal(0, 1)\", or input=true for a model input)")
        try:
            mechanisms[name] = Expression(attrs["mechanism"])
        except ExpressionError as err:
            raise ExpressionError(f"{where}: node '{name}': {err}") from None
        if _flag(attrs, "latent", name, where):
            latent.add(name)
        for key, store in (("observed", observed), ("intervened", interventions)):
            if key in attrs:
                store[name] = parse_value(attrs[key], name, key, where)

    declared = {name: set() for name in mechanisms}
    for sub in _walk(graph):
        for edge in sub.get_edges():
            _add_edge(edge, declared, mechanisms, inputs, where)

    for name, expr in mechanisms.items():
        used = {p for p in expr.names if p in mechanisms}
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
                             f"(mechanism {expr.text!r} uses {list(expr.names)})")

    dag = nx.DiGraph()
    for name, expr in mechanisms.items():
        dag.add_node(name, mechanism=expr, latent=name in latent)
    for name, expr in mechanisms.items():
        dag.add_edges_from((parent, name) for parent in expr.names if parent in mechanisms)
    try:
        scm = SCM(dag)
    except nx.NetworkXUnfeasible as err:
        raise nx.NetworkXUnfeasible(f"{where}: {err}") from None
    if interventions:
        scm = scm.do(**interventions)
    if observed:
        scm = scm.condition(**observed)
    return scm


def _add_edge(edge, declared, mechanisms, inputs, where):
    source, target = edge.get_source(), edge.get_destination()
    if not isinstance(source, str) or not isinstance(target, str):
        raise ValueError(f"{where}: edges must join two nodes, not subgraphs ({edge.to_string()})")
    source = _node_name(source, where, what="edge endpoint")
    target = _node_name(target, where, what="edge endpoint")
    for end in (source, target):
        if end not in mechanisms and end not in inputs:
            raise ValueError(f"{where}: edge {source} -> {target}: '{end}' is not defined; declare it as a "
                             f"node with a mechanism (or input=true): {end} [mechanism=\"...\"]")
    if target in inputs:
        raise ValueError(f"{where}: edge {source} -> {target}: '{target}' is an input, which has no parents")
    if source in inputs:
        if source not in mechanisms[target].names:
            raise ValueError(f"{where}: edge {source} -> {target}: the mechanism of '{target}' "
                             f"({mechanisms[target].text!r}) does not use the input '{source}'")
        return
    declared[target].add(source)
