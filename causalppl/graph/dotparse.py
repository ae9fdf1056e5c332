"""A small, fast DOT parser: text in, plain data out (nodes, edges, attributes).

Graphviz's grammar (https://graphviz.org/doc/info/lang.html) read by a
regular-expression tokenizer and a recursive-descent parser over the tokens.
It is about a hundred times faster than pyparsing (pydot's parser), so a
100,000-node file reads in a second or two. What it gives:

* ``node [...]`` and ``edge [...]`` defaults, applied to the nodes and edges
  created after them in their scope (subgraphs inherit and may override);
* edge chains (``a -> b -> c``) and subgraph endpoints (``{a b} -> c``);
* ports (``a:p -> b``) dropped, ``"a" + "b"`` concatenated, HTML strings kept;
* ``//``, ``/* */`` and ``#`` comments, a UTF-8 byte-order mark.

Errors are :class:`DotSyntaxError` (a ``ValueError``) with the line and column.

>>> g = parse_dot('digraph g { node [latent=true]; a; b [latent=false]; a -> b -> c; }')
>>> g.directed, list(g.nodes), g.nodes["b"], [(s, t) for s, t, _ in g.edges]
(True, ['a', 'b', 'c'], {'latent': 'false'}, [('a', 'b'), ('b', 'c')])
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEYWORDS = {"strict", "graph", "digraph", "node", "edge", "subgraph"}
_ESCAPES = {"n": "\n", "r": "\r", '"': '"', "\\": "\\", "\n": ""}

# Blanks and comments before a token are part of its match, so one C-level match yields one token.
_SKIP = r"(?:[ \t\r\f\v\ufeff\n]+|//[^\n]*|/\*.*?\*/|(?<![^\n])\#[^\n]*)*"
_TOKEN = re.compile(_SKIP + r"""(?:
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<html><)
  | (?P<edgeop>->|--)
  | (?P<id>-?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)|[A-Za-z_\u0080-\U0010ffff][A-Za-z_0-9\u0080-\U0010ffff]*)
  | (?P<punct>[{}\[\];,=:+])
)""", re.VERBOSE | re.DOTALL)
_BLANKS = re.compile(_SKIP, re.DOTALL)
_END = ("end", "", 0)


class DotSyntaxError(ValueError):
    """Text that is not valid DOT; the message gives the line and column."""


@dataclass
class DotGraph:
    """A parsed DOT graph: everything is a string; nodes in the order they were first seen.

    ``attrs`` holds the top-level graph attributes (``rankdir``, ...);
    ``nodes`` maps a name to its attributes (defaults applied); ``edges`` is
    a list of ``(source, target, attrs)``.
    """

    name: str | None = None
    directed: bool = True
    strict: bool = False
    attrs: dict = field(default_factory=dict)
    nodes: dict = field(default_factory=dict)
    edges: list = field(default_factory=list)


def _unescape(body):
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body, flags=re.S)


def tokenize(text):
    """``(kind, value, position)`` triples; kinds ``id`` (bare), ``qid`` (quoted or HTML), ``edgeop``,
    and the punctuation itself.

    >>> [value for _, value, _ in tokenize('a -> "b c"; x="1" + "2"')]
    ['a', '->', 'b c', ';', 'x', '=', '12']
    """
    tokens = []
    append = tokens.append
    position, end = 0, len(text)
    while position < end:
        # finditer runs in C; it stops at the first character no token matches (or at an HTML string).
        for found in _TOKEN.finditer(text, position):
            if found.start() != position:
                break
            position = found.end()
            kind = found.lastgroup
            if kind == "id":
                append(("id", found.group(kind), found.start(kind)))
            elif kind == "punct":
                value = found.group(kind)
                append((value, value, found.start(kind)))
            elif kind == "string":
                value = found.group(kind)[1:-1]
                at = found.start(kind)
                if "\\" in value:
                    value = _unescape(value)
                if tokens and tokens[-1][0] == "+":  # "a" + "b": one string
                    tokens.pop()
                    if not tokens or tokens[-1][0] != "qid":
                        raise DotSyntaxError(f"{_where(text, at)}: '+' must join two quoted strings")
                    value = tokens.pop()[1] + value
                append(("qid", value, at))
            elif kind == "edgeop":
                append(("edgeop", found.group(kind), found.start(kind)))
            else:  # html
                position = found.start(kind)
                break
        position = _BLANKS.match(text, position).end()  # trailing blanks and comments
        if position >= end:
            break
        if text[position] == "<":
            start = position
            value, position = _html(text, start)
            append(("qid", value, start))
            continue
        raise DotSyntaxError(f"{_where(text, position)}: unexpected character {text[position]!r}")
    return tokens


def _html(text, start):
    """An HTML string ``<...>`` with nested angle brackets: its text and the position after it."""
    depth, position = 0, start
    while position < len(text):
        char = text[position]
        depth += (char == "<") - (char == ">")
        position += 1
        if depth == 0:
            return text[start:position], position
    raise DotSyntaxError(f"{_where(text, start)}: an HTML string '<...' is never closed")


def _where(text, position):
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return f"line {line}, column {column}"


class _Parser:
    """Recursive descent over the tokens; builds a :class:`DotGraph` as it goes."""

    def __init__(self, text):
        self.text = text
        self.tokens = tokenize(text)
        self.tokens += [("end", "", len(text))] * 4  # so that lookahead needs no bounds check
        self.i = 0
        self.graph = DotGraph()

    # -- tokens -----------------------------------------------------------------

    def peek(self, offset=0):
        return self.tokens[self.i + offset]

    def keyword(self, offset=0):
        kind, value, _ = self.peek(offset)
        return value.lower() if kind == "id" and value.lower() in KEYWORDS else None

    def take(self, kind, what=None):
        token = self.peek()
        if token[0] != kind and not (kind == "id" and token[0] == "qid"):
            shown = repr(token[1]) if token[0] != "end" else "the end of the text"
            raise DotSyntaxError(f"{_where(self.text, token[2])}: expected {what or repr(kind)}, found {shown}")
        self.i += 1
        return token[1]

    def accept(self, kind):
        if self.peek()[0] == kind:
            self.i += 1
            return True
        return False

    # -- grammar ----------------------------------------------------------------

    def parse(self):
        graph = self.graph
        if self.keyword() == "strict":
            graph.strict = True
            self.i += 1
        kind = self.keyword()
        if kind not in ("graph", "digraph"):
            token = self.peek()
            raise DotSyntaxError(f"{_where(self.text, token[2])}: expected 'digraph' or 'graph', "
                                 f"found {token[1]!r}" if token[0] != "end" else "no graph: the text is empty")
        graph.directed = kind == "digraph"
        self.i += 1
        if self.peek()[0] in ("id", "qid"):
            graph.name = self.take("id")
        self.take("{")
        self.statements({}, {}, top=True)
        self.take("}")
        if self.peek()[0] != "end":
            raise DotSyntaxError(f"{_where(self.text, self.peek()[2])}: expected exactly one graph; "
                                 "more text follows its closing '}'")
        return graph

    def statements(self, node_defaults, edge_defaults, top=False):
        """Statements up to the closing brace; returns the nodes they mention (for subgraph edges)."""
        mentioned = {}
        while self.peek()[0] not in ("}", "end"):
            self.statement(node_defaults, edge_defaults, mentioned, top)
            self.accept(";")
        return mentioned

    def statement(self, node_defaults, edge_defaults, mentioned, top):
        # Fast paths for the two statements that make up large files: `a [k=v, ...]` and `a -> b`.
        tokens, i = self.tokens, self.i
        kind, name, _ = tokens[i]
        if kind == "qid" or (kind == "id" and name.lower() not in KEYWORDS):
            after = tokens[i + 1][0]
            if after == "[":
                self.i = i + 1
                nodes = self.graph.nodes
                if name not in nodes:
                    nodes[name] = dict(node_defaults)
                mentioned[name] = None
                nodes[name].update(self.attr_lists())
                return
            if after == "edgeop" and (tokens[i + 1][1] == "->") == self.graph.directed:
                kind, target, _ = tokens[i + 2]
                if (kind == "qid" or (kind == "id" and target.lower() not in KEYWORDS)) \
                        and tokens[i + 3][0] not in ("edgeop", "[", ":"):
                    self.i = i + 3
                    nodes = self.graph.nodes
                    for end in (name, target):
                        if end not in nodes:
                            nodes[end] = dict(node_defaults)
                        mentioned[end] = None
                    self.graph.edges.append((name, target, dict(edge_defaults)))
                    return
        word = self.keyword()
        if word in ("node", "edge") and self.peek(1)[0] == "[":
            self.i += 1
            (node_defaults if word == "node" else edge_defaults).update(self.attr_lists())
            return
        if word == "graph" and self.peek(1)[0] == "[":
            self.i += 1
            attrs = self.attr_lists()
            if top:
                self.graph.attrs.update(attrs)
            return
        if self.peek()[0] in ("id", "qid") and word is None and self.peek(1)[0] == "=":
            key = self.take("id")
            self.i += 1
            value = self.take("id", "a value")
            if top:
                self.graph.attrs[key] = value
            return
        ends = self.endpoint(node_defaults, edge_defaults, mentioned)
        if self.peek()[0] != "edgeop":
            if self.peek()[0] == "[":
                attrs = self.attr_lists()
                for name in ends:
                    self.graph.nodes[name].update(attrs)
            return
        chain = [ends]
        while self.peek()[0] == "edgeop":
            op = self.take("edgeop")
            if (op == "->") != self.graph.directed:
                raise DotSyntaxError(f"{_where(self.text, self.peek(-1)[2])}: '{op}' in a "
                                     f"{'digraph' if self.graph.directed else 'graph'}")
            chain.append(self.endpoint(node_defaults, edge_defaults, mentioned))
        attrs = dict(edge_defaults)
        if self.peek()[0] == "[":
            attrs.update(self.attr_lists())
        for sources, targets in zip(chain, chain[1:]):
            for source in sources:
                for target in targets:
                    self.graph.edges.append((source, target, dict(attrs)))

    def endpoint(self, node_defaults, edge_defaults, mentioned):
        """A node id (its port dropped) or a subgraph: the node names it stands for."""
        word = self.keyword()
        if word == "subgraph" or self.peek()[0] == "{":
            if word == "subgraph":
                self.i += 1
                if self.peek()[0] in ("id", "qid"):
                    self.i += 1  # the subgraph's name
            self.take("{")
            inner = self.statements(dict(node_defaults), dict(edge_defaults))
            self.take("}")
            mentioned.update(inner)
            return list(inner)
        if word is not None:
            token = self.peek()
            raise DotSyntaxError(f"{_where(self.text, token[2])}: the keyword {token[1]!r} cannot be a "
                                 "node name unless it is quoted")
        name = self.take("id", "a node name")
        if self.accept(":"):  # port (and compass point): drawing detail only
            self.take("id", "a port name")
            if self.accept(":"):
                self.take("id", "a compass point")
        nodes = self.graph.nodes
        if name not in nodes:
            nodes[name] = dict(node_defaults)
        mentioned[name] = None
        return [name]

    def attr_lists(self):
        attrs = {}
        tokens = self.tokens
        while self.accept("["):
            while True:
                # Fast path: `key = value` then `,`, `;` or `]`.
                i = self.i
                (kind, key, _), (equals, _, _), (kind2, value, _) = tokens[i], tokens[i + 1], tokens[i + 2]
                if kind in ("id", "qid") and equals == "=" and kind2 in ("id", "qid"):
                    attrs[key] = value
                    separator = tokens[i + 3][0]
                    self.i = i + 4 if separator in (",", ";") else i + 3
                    continue
                if self.peek()[0] == "]":
                    break
                key = self.take("id", "an attribute name")
                value = "true"
                if self.accept("="):
                    value = self.take("id", f"a value for {key!r}")
                attrs[key] = value
                if not self.accept(","):
                    self.accept(";")
            self.take("]")
        return attrs


def parse_dot(text):
    """Parse DOT ``text`` into a :class:`DotGraph` (raises :class:`DotSyntaxError`).

    >>> parse_dot('digraph { rankdir=TB; "x y" -> z [color=red] }').attrs
    {'rankdir': 'TB'}
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise DotSyntaxError("subgraphs nested too deeply") from None
