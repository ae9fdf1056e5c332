"""Graph and network file formats: one reader that picks the format, and a writer per format.

==========  =====================================  ======================
format      reader                                 writer
==========  =====================================  ======================
DOT         :func:`~causalppl.graph.dot.read_dot`  ``scm.to_dot()``
GML         :func:`.gml.read_gml`                  ``scm.to_gml()``
dagitty     :func:`.dagitty.read_dagitty`          ``scm.to_dagitty()``
BIF         :func:`.bif.read_bif`                  ``scm.to_bif()``
XMLBIF      :func:`.xmlbif.read_xmlbif`            ``scm.to_xmlbif()``
==========  =====================================  ======================

>>> read_graph("dag { x -> y }").parents("y"), read_graph("digraph { x -> y }").parents("y")
(('x',), ('x',))
"""

from __future__ import annotations

import re
from pathlib import Path

from causalppl.graph.dot import _source_text, read_dot
from causalppl.graph.formats.bif import read_bif, to_bif
from causalppl.graph.formats.dagitty import read_dagitty, to_dagitty
from causalppl.graph.formats.gml import read_gml, to_gml
from causalppl.graph.formats.xmlbif import read_xmlbif, to_xmlbif

READERS = {"dot": read_dot, "gml": read_gml, "dagitty": read_dagitty, "bif": read_bif, "xmlbif": read_xmlbif}
SUFFIXES = {".dot": "dot", ".gv": "dot", ".gml": "gml", ".dagitty": "dagitty", ".bif": "bif",
            ".xmlbif": "xmlbif", ".xml": "xmlbif"}
_COMMENTS = re.compile(r"(\s+|//[^\n]*|/\*.*?\*/|#[^\n]*)*", re.S)


def detect_format(text):
    """The format of graph ``text`` from its first words: dot, gml, dagitty, bif or xmlbif (or None).

    >>> [detect_format(t) for t in ("digraph {}", "graph [ ]", "dag {}", "network x {}", "<BIF/>")]
    ['dot', 'gml', 'dagitty', 'bif', 'xmlbif']
    """
    start = text.lstrip("\ufeff")
    start = start[_COMMENTS.match(start).end():]
    if start.startswith("<"):
        return "xmlbif"
    if re.match(r"(strict\s+)?(di)?graph\b[^\[{]*\{", start, re.I):
        return "dot"
    if re.match(r"(graph|Creator|Version)\b\s*[\[\"0-9]", start):
        return "gml"
    if re.match(r"(dag|pdag|mag|pag)\b[^{]*\{", start):
        return "dagitty"
    if re.match(r"(network|variable|probability)\b", start):
        return "bif"
    return None


def graph_format(path_or_text):
    """The format of a file (by its suffix, then its content) or of text (by its content)."""
    if isinstance(path_or_text, (str, Path)):
        suffixes = [s.lower() for s in Path(str(path_or_text)).suffixes[-2:]]
        if suffixes and suffixes[-1] == ".gz":
            suffixes = suffixes[:-1]
        if suffixes and suffixes[-1] in SUFFIXES and "\n" not in str(path_or_text):
            return SUFFIXES[suffixes[-1]]
    text, where = _source_text(path_or_text, "read_graph", "graph")
    found = detect_format(text)
    if found is None:
        raise ValueError(f"read_graph: cannot tell the format of {where}: expected DOT ('digraph {{'), GML "
                         "('graph ['), dagitty ('dag {'), BIF ('network'/'variable') or XMLBIF ('<BIF>')")
    return found


def read_graph(path_or_text, format=None):
    """An SCM (or a structure-only causal DAG) from a file or text in any supported format.

    Parameters
    ----------
    path_or_text : str or pathlib.Path
        A file (its suffix picks the format: ``.dot``/``.gv``, ``.gml``,
        ``.dagitty``, ``.bif`` / ``.bif.gz``, ``.xmlbif``/``.xml``; else its
        content does) or the text itself.
    format : str, optional
        ``"dot"``, ``"gml"``, ``"dagitty"``, ``"bif"`` or ``"xmlbif"``, overriding detection.

    Returns
    -------
    SCM
        DOT/GML with mechanisms: an SCM; without: a causal DAG (latent nodes
        marked; identification, drawing and :meth:`SCM.from_graph` take it,
        queries say they need mechanisms). dagitty: a causal DAG with
        ``x <-> y`` as a latent node and :attr:`SCM.roles`. BIF/XMLBIF: an SCM
        of probability tables with state names.

    >>> read_graph("dag { x [exposure] y [outcome] x -> y }").roles
    {'x': 'exposure', 'y': 'outcome'}
    """
    chosen = format or graph_format(path_or_text)
    if chosen not in READERS:
        raise ValueError(f"read_graph: unknown format {chosen!r}; known: {', '.join(READERS)}")
    return READERS[chosen](path_or_text)


__all__ = ["detect_format", "read_bif", "read_dagitty", "read_gml", "read_graph", "read_xmlbif",
           "to_bif", "to_dagitty", "to_gml", "to_xmlbif"]
