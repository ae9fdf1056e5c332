"""Bayesian networks in BIF: discrete SCMs whose mechanisms are probability tables.

BIF (the Bayesian Interchange Format of Cozman's JavaBayes, used by the bnlearn
repository and pgmpy) declares each variable's states and each conditional
probability table::

    network asia { }
    variable smoke { type discrete [ 2 ] { yes, no }; }
    variable lung { type discrete [ 2 ] { yes, no }; }
    probability ( smoke ) { table 0.5, 0.5; }
    probability ( lung | smoke ) { (yes) 0.1, 0.9; (no) 0.01, 0.99; }

:func:`read_bif` makes each variable a node with a
:class:`~causalppl.causal.learnable.CategoricalTable` mechanism that keeps
the state names (``labels``, and ``parent_levels`` for its parents) and
writes each table into ``scm.params`` (``"lung.probs"``, shape
``[*parent_states, states]``). :func:`to_bif` writes any discrete SCM
(tables, Bernoulli or Categorical mechanisms) back.

>>> scm = read_bif('''variable smoke { type discrete [ 2 ] { yes, no }; }
... variable lung { type discrete [ 2 ] { yes, no }; }
... probability ( smoke ) { table 0.5, 0.5; }
... probability ( lung | smoke ) { (yes) 0.1, 0.9; (no) 0.01, 0.99; }''')
>>> scm.nodes, scm.labels("lung")
(('smoke', 'lung'), ('yes', 'no'))
>>> scm.params["lung.probs"].detach()
tensor([[0.1000, 0.9000],
        [0.0100, 0.9900]])
"""

from __future__ import annotations

import gzip
import itertools
import math
import re
from pathlib import Path

import networkx as nx
import torch
from torch.distributions import constraints

from causalppl.graph.dot import _source_text, build_scm, with_meta
from causalppl.handlers import param_scope, substitute

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<punct>[{}\[\]();,|])
  | (?P<word>[^\s{}\[\]();,|"]+)
""", re.VERBOSE | re.DOTALL)
TOLERANCE = 0.01  # a table row may sum to 1 +- this (files are rounded); rows are renormalised


def _tokens(text, where):
    """``(kind, value, "line N")`` per token; the line is counted as the text is read (one pass)."""
    tokens = []
    position, line = 0, 1
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None:
            raise ValueError(f"{where}: line {line}: not valid BIF: unexpected {text[position]!r}")
        kind, matched = found.lastgroup, found.group()
        if kind not in ("space", "comment"):
            value = matched[1:-1] if kind == "string" else matched
            tokens.append((value if kind == "punct" else "word", value, f"line {line}"))
        line += matched.count("\n")
        position = found.end()
    return tokens


class _Reader:
    def __init__(self, text, where):
        self.where = where
        self.tokens = _tokens(text, where)
        self.i = 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", "the end")

    def take(self, kind, what):
        token = self.peek()
        if token[0] != kind:
            shown = repr(token[1]) if token[0] != "end" else "the end of the file"
            raise ValueError(f"{self.where}: {token[2]}: not valid BIF: expected {what}, found {shown}")
        self.i += 1
        return token[1]

    def words_until(self, stop):
        """Words (commas skipped) up to the punctuation ``stop``, which is consumed."""
        words = []
        while self.peek()[0] != stop:
            if self.peek()[0] == "end":
                self.take(stop, repr(stop))
            kind, value, _ = self.peek()
            self.i += 1
            if kind == "word":
                words.append(value)
        self.i += 1
        return words

    def skip_block(self):
        """Skip ``{ ... }`` (a network block with its properties)."""
        self.take("{", "'{'")
        depth = 1
        while depth:
            kind = self.take(self.peek()[0], "'}'") if self.peek()[0] != "end" else self.take("}", "'}'")
            depth += (kind == "{") - (kind == "}")


def parse_bif(text, where="BIF text"):
    """``(name, states, tables)``: variable -> state names, variable -> ``(parents, rows)``.

    ``rows`` maps a tuple of parent states (``()`` for a root, ``None`` for
    ``table``/``default`` entries) to the list of probabilities.

    >>> parse_bif("variable a { type discrete [2] { t, f }; } probability (a) { table 0.2, 0.8; }")
    (None, {'a': ['t', 'f']}, {'a': ([], {None: [0.2, 0.8]})})
    """
    reader = _Reader(text.lstrip("\ufeff"), where)
    name, states, tables = None, {}, {}
    while reader.peek()[0] != "end":
        keyword = reader.take("word", "'network', 'variable' or 'probability'").lower()
        if keyword == "network":
            name = reader.take("word", "the network's name") if reader.peek()[0] == "word" else None
            reader.skip_block()
        elif keyword == "variable":
            variable = reader.take("word", "a variable name")
            states[variable] = _variable(reader, variable)
        elif keyword == "probability":
            reader.take("(", "'('")
            reader.words_until(")")
            variable, parents = _split_head(reader)
            tables[variable] = (parents, _table(reader, variable))
        else:
            raise ValueError(f"{where}: {reader.tokens[reader.i - 1][2]}: not valid BIF: unknown block "
                             f"{keyword!r} (expected network, variable or probability)")
    return name, states, tables


def _split_head(reader):
    """``probability ( child | parents )``: the child and its parents (the ``|`` was a token)."""
    head = []
    j = reader.i - 2
    while reader.tokens[j][0] != "(":
        head.append(reader.tokens[j])
        j -= 1
    head.reverse()
    words = [value for kind, value, _ in head if kind == "word"]
    bar = next((k for k, (kind, _, _) in enumerate(head) if kind == "|"), None)
    if bar is None:
        return words[0], words[1:]
    child = [value for kind, value, _ in head[:bar] if kind == "word"]
    if len(child) != 1:
        raise ValueError(f"{reader.where}: {head[0][2]}: not valid BIF: expected one variable before '|'")
    return child[0], words[1:]


def _variable(reader, variable):
    reader.take("{", "'{'")
    states = None
    while reader.peek()[0] != "}":
        word = reader.take("word", "'type' or 'property'").lower()
        if word == "type":
            kind = reader.take("word", "'discrete'")
            if kind.lower() != "discrete":
                raise ValueError(f"{reader.where}: variable '{variable}': type {kind!r} is not supported "
                                 "(only discrete variables)")
            reader.take("[", "'['")
            count = reader.take("word", "the number of states")
            reader.take("]", "']'")
            reader.take("{", "'{'")
            states = reader.words_until("}")
            if not count.isdigit() or int(count) != len(states):
                raise ValueError(f"{reader.where}: variable '{variable}': declares [{count}] states but "
                                 f"lists {len(states)} ({', '.join(states)})")
            if len(set(states)) != len(states):
                raise ValueError(f"{reader.where}: variable '{variable}': repeated state names {states}")
        reader.words_until(";")
    reader.i += 1
    if states is None:
        raise ValueError(f"{reader.where}: variable '{variable}' has no 'type discrete [n] {{ ... }}'")
    return states


def _table(reader, variable):
    reader.take("{", "'{'")
    rows = {}
    while reader.peek()[0] != "}":
        kind, value, where = reader.peek()
        if kind == "(":
            reader.i += 1
            key = tuple(reader.words_until(")"))
            rows[key] = _numbers(reader, variable, reader.words_until(";"), where)
        elif value.lower() in ("table", "default"):
            reader.i += 1
            rows[None if value.lower() == "table" else "default"] = _numbers(
                reader, variable, reader.words_until(";"), where)
        elif value.lower() == "property":
            reader.words_until(";")
        else:
            reader.take("(", "'(', 'table' or 'default'")
    reader.i += 1
    return rows


def _numbers(reader, variable, words, where):
    try:
        values = [float(word) for word in words]
    except ValueError:
        raise ValueError(f"{reader.where}: {where}: probability of '{variable}': expected numbers, "
                         f"got {' '.join(words)!r}") from None
    bad = [v for v in values if not (math.isfinite(v) and 0 <= v <= 1)]
    if bad:
        raise ValueError(f"{reader.where}: {where}: probability of '{variable}': {bad[0]} is not a "
                         "probability in [0, 1]")
    return values


def _cpt(where, variable, states, parents, rows):
    """The table as a tensor ``[*parent_states, states]`` (rows checked and renormalised)."""
    k = len(states[variable])
    cards = [len(states[p]) for p in parents]
    size = math.prod(cards)
    if None in rows:  # "table": the child's states vary slowest (pgmpy's and JavaBayes' order)
        flat = rows[None]
        if len(flat) != k * size:
            raise ValueError(f"{where}: probability of '{variable}': the table has {len(flat)} numbers, "
                             f"expected {k * size} ({k} states x {size} parent configurations)")
        table = torch.tensor(flat, dtype=torch.float64).reshape(k, size).T.reshape(*cards, k)
    else:
        table = torch.empty(*cards, k, dtype=torch.float64)
        for combo in itertools.product(*(range(c) for c in cards)):
            key = tuple(states[p][i] for p, i in zip(parents, combo))
            row = rows.get(key, rows.get("default"))
            if row is None:
                given = ", ".join(f"{p}={s}" for p, s in zip(parents, key))
                raise ValueError(f"{where}: probability of '{variable}': no row for ({given})")
            if len(row) != k:
                raise ValueError(f"{where}: probability of '{variable}': row ({', '.join(key)}) has "
                                 f"{len(row)} numbers for {k} states")
            table[combo] = torch.tensor(row, dtype=torch.float64)
        known = _keys(states, parents)
        unknown = [key for key in rows if key != "default" and key not in known]
        if unknown:
            raise ValueError(f"{where}: probability of '{variable}': row ({', '.join(unknown[0])}) names "
                             f"states that its parents {parents} do not have")
    sums = table.sum(-1)
    worst = float((sums - 1).abs().max()) if table.numel() else 0.0
    if worst > TOLERANCE:
        raise ValueError(f"{where}: probability of '{variable}': a row sums to "
                         f"{float(sums.flatten()[(sums - 1).abs().flatten().argmax()]):.4g}, not 1")
    return (table / sums.unsqueeze(-1)).to(torch.get_default_dtype())


def _keys(states, parents):
    return set(itertools.product(*(states[p] for p in parents)))


def _text_of(path_or_text):
    """BIF text; a ``.gz`` file (as pgmpy ships its networks) is decompressed."""
    if isinstance(path_or_text, (str, Path)) and str(path_or_text).endswith(".gz"):
        path = Path(path_or_text)
        try:
            return gzip.decompress(path.read_bytes()).decode("utf-8-sig"), f"BIF file '{path}'"
        except (OSError, EOFError, UnicodeDecodeError) as err:
            raise ValueError(f"read_bif: cannot read '{path}': {err}") from None
    return _source_text(path_or_text, "read_bif", "BIF")


def read_bif(path_or_text):
    """A discrete SCM from BIF text or a file (``.bif`` or ``.bif.gz``); see the module docstring.

    Raises ``ValueError`` naming the file and line for text that is not BIF,
    and naming the variable for a table of the wrong size, a missing row, a
    row that does not sum to 1, an unknown parent or state.
    """
    text, where = _text_of(path_or_text)
    name, states, tables = parse_bif(text, where)
    return network_scm(where, name, states, tables)


def network_scm(where, name, states, tables):
    """The SCM of a Bayesian network given as state names and ``(parents, rows)`` tables."""
    from causalppl.causal.learnable import CategoricalTable  # graph/ must not import causal/ eagerly

    for variable in states:
        if not variable.isidentifier() or variable.startswith("_"):
            raise ValueError(f"{where}: variable name {variable!r} is not allowed: SCM node names must be "
                             "Python identifiers not starting with '_'")
        if variable not in tables:
            raise ValueError(f"{where}: variable '{variable}' has no probability table")
    for variable, (parents, _) in tables.items():
        for unknown in [variable, *parents]:
            if unknown not in states:
                raise ValueError(f"{where}: probability of '{variable}' names '{unknown}', which is not a "
                                 "declared variable")
    dag = nx.DiGraph()
    cpts = {}
    for variable in states:
        parents, rows = tables[variable]
        cpts[variable] = _cpt(where, variable, states, parents, rows)
        mechanism = CategoricalTable(variable, parents, len(states[variable]), [len(states[p]) for p in parents],
                                     labels=states[variable], parent_levels={p: states[p] for p in parents})
        dag.add_node(variable, mechanism=mechanism)
    for variable, (parents, _) in tables.items():
        dag.add_edges_from((p, variable) for p in parents)
    scm = build_scm(dag, where)
    for variable, table in cpts.items():
        scm.params.get_param(f"{variable}.probs", table, constraints.simplex)
    return with_meta(scm, {"name": name if name and name != "unknown" else None})


# -- writing ---------------------------------------------------------------------------


def node_table(scm, node, cards):
    """The table ``[*parent_states, states]`` of a discrete node, by evaluating its mechanism.

    ``cards`` maps each parent to its number of states. Works for tables,
    Bernoulli, Categorical and logistic mechanisms.
    """
    parents = scm.parents(node)
    mechanism = scm.mechanism(node)
    grid = list(itertools.product(*(range(cards[p]) for p in parents)))
    values = {p: torch.tensor([float(combo[i]) for combo in grid]) for i, p in enumerate(parents)}
    sites = mechanism.global_sites
    if not sites:
        with torch.no_grad(), param_scope(store=scm.params):
            table = _grid_table(node, mechanism(**values), len(grid))
    else:
        # Bayesian weights (a Dirichlet table, logistic weights): the posterior mean of each row,
        # averaged over the fitted posterior's draws.
        posterior = scm._state.posterior or {}
        if any(site not in posterior for site in sites):
            raise ValueError(f"to_bif: node '{node}' has Bayesian weights ({', '.join(sites)}) but no posterior "
                             "draws; fit the SCM first (BIF holds one table: their posterior mean)")
        draws = len(posterior[sites[0]])
        total = 0.0
        with torch.no_grad(), param_scope(store=scm.params):
            for k in range(draws):
                with substitute(data={site: posterior[site][k] for site in sites}):
                    mechanism.prepare()
                total = total + _grid_table(node, mechanism(**values), len(grid))
        table = total / draws
    return table.reshape(*[cards[p] for p in parents], table.shape[-1])


def _grid_table(node, distribution, rows):
    """``[rows, states]`` probabilities of a Bernoulli or Categorical over the parents' grid."""
    if isinstance(distribution, torch.distributions.Bernoulli):
        probs = distribution.probs.reshape(rows or 1)
        return torch.stack([1 - probs, probs], -1)
    if isinstance(distribution, torch.distributions.Categorical):
        return distribution.probs.reshape(rows or 1, -1)
    raise ValueError(f"to_bif: node '{node}' is not discrete: its mechanism gives a "
                     f"{type(distribution).__name__} (BIF holds Bernoulli, Categorical and table nodes)")


def _word(state):
    text = str(state)
    return text if re.fullmatch(r"[^\s{}\[\]();,|\"]+", text) else '"' + text.replace('"', "'") + '"'


def network_tables(scm, name=None, what="to_bif", kind="BIF"):
    """``(name, cards, tables)`` of a discrete SCM: node -> number of states, node -> its table."""
    if scm.interventions or scm.observed or scm._soft:
        raise ValueError(f"{what}: {kind} holds a network, not a query; write the SCM before do()/condition()")
    scm.require_mechanisms()
    cards, tables = {}, {}
    for node in scm.nodes:
        try:
            tables[node] = node_table(scm, node, cards)
        except ValueError as err:
            raise ValueError(str(err).replace("to_bif:", f"{what}:", 1)) from None
        cards[node] = tables[node].shape[-1]
        labels = scm.labels(node)
        if labels is not None and len(labels) != cards[node]:
            raise ValueError(f"{what}: node '{node}' has {len(labels)} labels for {cards[node]} states")
    return name or scm._meta.get("name") or "scm", cards, tables


def to_bif(scm, name=None):
    """BIF text of a discrete SCM (every node a table, Bernoulli or Categorical; no do/condition).

    >>> import causalppl as cp
    >>> print(to_bif(cp.SCM().add("rain", "Bernoulli(0.2)", labels=("dry", "wet"))))
    network scm {
    }
    variable rain {
      type discrete [ 2 ] { dry, wet };
    }
    probability ( rain ) {
      table 0.8, 0.2;
    }
    <BLANKLINE>
    """
    name, cards, tables = network_tables(scm, name)
    lines = [f"network {_word(name)} {{", "}"]
    for node in scm.nodes:
        states = scm.labels(node) or tuple(range(cards[node]))
        lines += [f"variable {node} {{",
                  f"  type discrete [ {cards[node]} ] {{ {', '.join(_word(s) for s in states)} }};", "}"]
    for node in scm.nodes:
        parents = scm.parents(node)
        table = tables[node]
        head = node if not parents else f"{node} | {', '.join(parents)}"
        lines.append(f"probability ( {head} ) {{")
        if not parents:
            lines.append(f"  table {', '.join(_number(p) for p in table.tolist())};")
        for combo in itertools.product(*(range(cards[p]) for p in parents)) if parents else ():
            states = [_word((scm.labels(p) or tuple(range(cards[p])))[i]) for p, i in zip(parents, combo)]
            lines.append(f"  ({', '.join(states)}) {', '.join(_number(p) for p in table[combo].tolist())};")
        lines.append("}")
    return "\n".join(lines) + "\n"


def _number(p):
    return f"{p:.7g}"  # float32 tables: seven significant digits
