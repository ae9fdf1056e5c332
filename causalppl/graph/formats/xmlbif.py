"""Bayesian networks in XMLBIF (version 0.3): the XML form of BIF.

``<VARIABLE TYPE="nature">`` elements name each variable and its
``<OUTCOME>`` states; ``<DEFINITION>`` elements give ``<FOR>`` the child,
``<GIVEN>`` its parents and ``<TABLE>`` the probabilities, the child's state
varying fastest. The XML is parsed by the standard library's expat parser
with every document type declaration refused, so no entity is ever expanded
(no external entities, no "billion laughs").

>>> scm = read_xmlbif('''<BIF VERSION="0.3"><NETWORK><NAME>n</NAME>
... <VARIABLE TYPE="nature"><NAME>a</NAME><OUTCOME>off</OUTCOME><OUTCOME>on</OUTCOME></VARIABLE>
... <DEFINITION><FOR>a</FOR><TABLE>0.3 0.7</TABLE></DEFINITION></NETWORK></BIF>''')
>>> scm.labels("a"), scm.params["a.probs"].detach()
(('off', 'on'), tensor([0.3000, 0.7000]))
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.parsers import expat
from xml.sax.saxutils import escape

from causalppl.graph.dot import _source_text
from causalppl.graph.formats.bif import network_scm, network_tables


def _refuse(*_):
    raise ValueError("a document type declaration (DOCTYPE / ENTITY) is not allowed")


def parse_xml(text, where):
    """The root element of ``text`` (expat into an ElementTree); DOCTYPE and entity declarations are refused."""
    parser = expat.ParserCreate()
    builder = ET.TreeBuilder()
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = _refuse  # before any entity is declared, let alone expanded
    parser.EntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    try:
        parser.Parse(text.lstrip("\ufeff"), True)
        return builder.close()
    except expat.ExpatError as err:
        raise ValueError(f"{where}: not valid XML: {err}") from None
    except ValueError as err:
        raise ValueError(f"{where}: refused: {err}") from None
    except AssertionError:
        raise ValueError(f"{where}: not valid XML: no root element") from None


def _text(element, tag, where, what):
    found = element.find(tag)
    if found is None or not (found.text or "").strip():
        raise ValueError(f"{where}: {what} has no <{tag}>")
    return found.text.strip()


def read_xmlbif(path_or_text):
    """A discrete SCM from XMLBIF text or a file: tables with state names; see the module docstring.

    Raises ``ValueError`` naming the file for XML that is not XMLBIF, a DOCTYPE,
    or (naming the variable) a table of the wrong size or rows that do not sum to 1.
    """
    text, where = _source_text(path_or_text, "read_xmlbif", "XMLBIF")
    root = parse_xml(text, where)
    network = root.find("NETWORK") if root.tag.upper() == "BIF" else root
    if network is None or network.tag.upper() != "NETWORK":
        raise ValueError(f"{where}: not XMLBIF: expected <BIF><NETWORK>...</NETWORK></BIF>, found <{root.tag}>")
    name = network.findtext("NAME")
    states = {}
    for variable in network.iter("VARIABLE"):
        node = _text(variable, "NAME", where, "a <VARIABLE>")
        states[node] = [(o.text or "").strip() for o in variable.findall("OUTCOME")]
        if len(states[node]) < 2:
            raise ValueError(f"{where}: variable '{node}' needs at least two <OUTCOME> states")
    tables = {}
    for definition in network.iter("DEFINITION"):
        node = _text(definition, "FOR", where, "a <DEFINITION>")
        parents = [(g.text or "").strip() for g in definition.findall("GIVEN")]
        words = (definition.findtext("TABLE") or "").split()
        try:
            flat = [float(word) for word in words]
        except ValueError:
            raise ValueError(f"{where}: the <TABLE> of '{node}' holds something that is not a number") from None
        tables[node] = (parents, {"xml": flat})
    converted = {}
    for node, (parents, rows) in tables.items():
        if node not in states or any(p not in states for p in parents):
            unknown = next(n for n in [node, *parents] if n not in states)
            raise ValueError(f"{where}: the <DEFINITION> of '{node}' names '{unknown}', which is not a <VARIABLE>")
        converted[node] = (parents, _rows(where, node, parents, states, rows["xml"]))
    return network_scm(where, name, states, converted)


def _rows(where, node, parents, states, flat):
    """The flat table (child fastest, last parent next) as BIF rows keyed by parent states."""
    import itertools

    k = len(states[node])
    combos = list(itertools.product(*(states[p] for p in parents)))
    if len(flat) != k * len(combos):
        raise ValueError(f"{where}: the <TABLE> of '{node}' has {len(flat)} numbers, expected "
                         f"{k * len(combos)} ({k} states x {len(combos)} parent configurations)")
    return {combo: flat[i * k:(i + 1) * k] for i, combo in enumerate(combos)}


def to_xmlbif(scm, name=None):
    """XMLBIF 0.3 text of a discrete SCM (every node a table, Bernoulli or Categorical; no do/condition).

    The inverse of :func:`read_xmlbif`: state names are the node's labels (or
    0, 1, ...); each ``<TABLE>`` lists the child's probabilities fastest, then
    the last parent's states. Fitted tables are written as fitted, Bayesian
    ones as their posterior mean.

    >>> import causalppl as cp
    >>> text = to_xmlbif(cp.SCM().add("rain", "Bernoulli(0.2)", labels=("dry", "wet")))
    >>> "<OUTCOME>wet</OUTCOME>" in text, read_xmlbif(text).params["rain.probs"].tolist()
    (True, [0.800000011920929, 0.20000000298023224])
    """
    from causalppl.graph.formats.bif import _number

    name, cards, tables = network_tables(scm, name, "to_xmlbif", "XMLBIF")
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<BIF VERSION="0.3">', "<NETWORK>",
             f"<NAME>{escape(str(name))}</NAME>"]
    for node in scm.nodes:
        states = scm.labels(node) or tuple(range(cards[node]))
        lines.append('<VARIABLE TYPE="nature">')
        lines.append(f"  <NAME>{escape(node)}</NAME>")
        lines += [f"  <OUTCOME>{escape(str(state))}</OUTCOME>" for state in states]
        lines.append("</VARIABLE>")
    for node in scm.nodes:
        lines.append("<DEFINITION>")
        lines.append(f"  <FOR>{escape(node)}</FOR>")
        lines += [f"  <GIVEN>{escape(parent)}</GIVEN>" for parent in scm.parents(node)]
        flat = tables[node].reshape(-1).tolist()
        lines.append(f"  <TABLE>{' '.join(_number(p) for p in flat)}</TABLE>")
        lines.append("</DEFINITION>")
    lines += ["</NETWORK>", "</BIF>"]
    return "\n".join(lines) + "\n"
