"""dagitty text in and out: causal DAGs with latent confounders and roles.

dagitty (https://www.dagitty.net, and the R package) writes a graph as
``dag { x [exposure]; y [outcome]; u [latent]; x -> y; x <- z -> y; x <-> y }``.
Nodes, ``->`` / ``<-`` edges and chains, ``{a b} -> c`` groups, node options
``[exposure]``, ``[outcome]``, ``[latent]``, ``[adjusted]``, ``[selected]``,
``pos="..."`` (ignored) and graph options such as ``bb="..."`` (ignored).
``x <-> y`` (a latent common cause) becomes a latent node ``U_x_y`` with
edges into both. The result is a structure-only SCM (a causal DAG) whose
:attr:`SCM.roles` keeps the roles.

>>> scm = read_dagitty("dag { x [exposure] y [outcome] x -> y  x <-> y }")
>>> scm.nodes, sorted(scm.latent), scm.roles
(('U_x_y', 'x', 'y'), ['U_x_y'], {'x': 'exposure', 'y': 'outcome'})
>>> print(to_dagitty(scm))
dag {
U_x_y [latent]
x [exposure]
y [outcome]
x -> y
U_x_y -> x
U_x_y -> y
}
"""

from __future__ import annotations

import re

import networkx as nx

from causalppl.graph.dot import _source_text, build_scm, with_meta
from causalppl.graph.mechanism import Unspecified

HEADERS = ("dag", "pdag", "mag", "pag", "graph")
ROLES = ("exposure", "outcome", "adjusted", "selected")

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<arrow><->|->|<-|--|@->|@-@|@--|-@|<-@)
  | (?P<punct>[{}\[\],;=])
  | (?P<name>[^\s{}\[\],;="<>@-]+(?:-(?![->@])[^\s{}\[\],;="<>@-]*)*)
""", re.VERBOSE | re.DOTALL)


class _Tokens:
    def __init__(self, text, where):
        self.where = where
        self.items = []
        position, line, line_start = 0, 1, 0  # the line is counted as the text is read (one pass)
        while position < len(text):
            found = _TOKEN.match(text, position)
            if found is None:
                raise ValueError(f"{where}: {_place(line, position - line_start)}: not valid dagitty: "
                                 f"unexpected character {text[position]!r}")
            matched = found.group()
            if found.lastgroup not in ("space", "comment"):
                value = matched
                if found.lastgroup == "string":
                    value = value[1:-1].replace('\\"', '"')
                kind = value if found.lastgroup == "punct" else found.lastgroup
                self.items.append((kind, value, _place(line, position - line_start)))
            newlines = matched.count("\n")
            if newlines:
                line += newlines
                line_start = position + matched.rfind("\n") + 1
            position = found.end()
        self.i = 0

    def peek(self):
        return self.items[self.i] if self.i < len(self.items) else ("end", "", "the end")

    def take(self, kind, what):
        token = self.peek()
        if token[0] != kind and not (kind == "name" and token[0] == "string"):
            shown = repr(token[1]) if token[0] != "end" else "the end of the text"
            raise ValueError(f"{self.where}: {token[2]}: not valid dagitty: expected {what}, found {shown}")
        self.i += 1
        return token[1]


def _place(line, offset):
    return f"line {line}, column {offset + 1}"


def parse_dagitty(text, where="dagitty text"):
    """``(nodes, edges, bidirected)``: node -> list of options, directed edges, ``<->`` pairs.

    >>> parse_dagitty("dag { a [exposure] a -> b <- c }")
    ({'a': ['exposure'], 'b': [], 'c': []}, [('a', 'b'), ('c', 'b')], [])
    """
    tokens = _Tokens(text.lstrip("\ufeff"), where)
    kind = tokens.peek()
    if kind[0] == "name" and kind[1].lower() in HEADERS:
        tokens.i += 1
        if tokens.peek()[0] in ("name", "string"):
            tokens.i += 1  # a graph name
    tokens.take("{", "'{' after 'dag'")
    nodes, edges, bidirected = {}, [], []
    while tokens.peek()[0] not in ("}", "end"):
        _statement(tokens, nodes, edges, bidirected)
        while tokens.peek()[0] in (";", ","):
            tokens.i += 1
    tokens.take("}", "'}'")
    if tokens.peek()[0] != "end":
        raise ValueError(f"{where}: {tokens.peek()[2]}: not valid dagitty: text after the closing '}}'")
    return nodes, edges, bidirected


def _statement(tokens, nodes, edges, bidirected):
    first = tokens.peek()
    if first[0] in ("name", "string") and tokens.i + 1 < len(tokens.items) and tokens.items[tokens.i + 1][0] == "=":
        tokens.i += 2
        tokens.take("name", "a value")  # a graph option such as bb="..."
        return
    chain = [_group(tokens, nodes)]
    arrows = []
    while tokens.peek()[0] == "arrow":
        arrow, place = tokens.peek()[1], tokens.peek()[2]
        tokens.i += 1
        if arrow not in ("->", "<-", "<->"):
            raise ValueError(f"{tokens.where}: {place}: the edge '{arrow}' is not a causal DAG's edge "
                             "(use ->, <- or <-> for a latent common cause)")
        arrows.append(arrow)
        chain.append(_group(tokens, nodes))
    if tokens.peek()[0] == "[":
        options = _options(tokens)
        if not arrows:
            for name in chain[0]:
                nodes[name] += [o for o in options if o not in nodes[name]]
    for arrow, sources, targets in zip(arrows, chain, chain[1:]):
        for a in sources:
            for b in targets:
                if arrow == "->":
                    edges.append((a, b))
                elif arrow == "<-":
                    edges.append((b, a))
                else:
                    bidirected.append((a, b))


def _group(tokens, nodes):
    if tokens.peek()[0] == "{":
        tokens.i += 1
        names = []
        while tokens.peek()[0] != "}":
            names += _group(tokens, nodes)
            if tokens.peek()[0] in (",", ";"):
                tokens.i += 1
        tokens.i += 1
        return names
    name = tokens.take("name", "a node name")
    nodes.setdefault(name, [])
    return [name]


def _options(tokens):
    tokens.take("[", "'['")
    options = []
    while tokens.peek()[0] != "]":
        key = tokens.take("name", "a node option")
        if tokens.peek()[0] == "=":
            tokens.i += 1
            tokens.take("name", f"a value for {key}")  # pos="x,y": layout only
        else:
            options.append(key.lower())
        if tokens.peek()[0] == ",":
            tokens.i += 1
    tokens.i += 1
    return options


def read_dagitty(path_or_text):
    """A structure-only SCM from dagitty text or a file; see the module docstring.

    Raises ``ValueError`` naming the line for text that is not dagitty, an
    undirected or partially directed edge, a node name that is not an
    identifier; ``networkx.NetworkXUnfeasible`` naming a cycle.

    >>> read_dagitty("dag { z -> x -> y; z -> y }").parents("y")
    ('x', 'z')
    """
    text, where = _source_text(path_or_text, "read_dagitty", "dagitty")
    nodes, edges, bidirected = parse_dagitty(text, where)
    for name in nodes:
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"{where}: node name {name!r} is not allowed: SCM node names must be Python "
                             "identifiers not starting with '_'")
    latent = {name for name, options in nodes.items() if "latent" in options}
    order = dict.fromkeys(nodes)
    edges = list(edges)
    for a, b in bidirected:
        name = _fresh(f"U_{a}_{b}", order)
        order[name] = None
        latent.add(name)
        edges += [(name, a), (name, b)]
    parents = {name: {} for name in order}
    for a, b in edges:
        parents[b][a] = None
    dag = nx.DiGraph()
    for name in order:
        dag.add_node(name, mechanism=Unspecified(name, parents[name]), latent=name in latent)
    dag.add_edges_from(edges)
    roles = {name: next(o for o in options if o in ROLES) for name, options in nodes.items()
             if any(o in ROLES for o in options)}
    return with_meta(build_scm(dag, where), {"roles": roles})


def _fresh(name, taken):
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    return candidate


def to_dagitty(scm):
    """dagitty text of ``scm``'s graph: roles and latent nodes as options, one edge a line.

    >>> import causalppl as cp
    >>> print(to_dagitty(cp.graphs.load("confounded")))
    dag {
    z
    x
    y
    z -> x
    z -> y
    x -> y
    }
    """
    roles = scm.roles
    lines = ["dag {"]
    for node in scm.nodes:
        options = ([roles[node]] if node in roles else []) + (["latent"] if node in scm.latent else [])
        lines.append(f"{node} [{','.join(options)}]" if options else node)
    lines += [f"{a} -> {b}" for a, b in scm.graph.edges]
    lines.append("}")
    return "\n".join(lines)
