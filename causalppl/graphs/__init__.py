"""Ready-made SCMs: the DOT files in this package (``causalppl/graphs/*.dot``, shipped as package data).

Each file holds one classic causal story with expression mechanisms (the
tutorial's scale, the sprinkler, smoking/tar/cancer, kidney stones, ...) and
starts with a comment that tells it.

The files are package data, so they are there in any install (editable or
from a wheel).

>>> import causalppl as cp
>>> "scale" in cp.graphs.names()
True
>>> cp.graphs.load("scale").inputs
('guess',)
"""

from __future__ import annotations

from pathlib import Path

from causalppl.graph.dot import read_dot

GRAPHS_DIR = Path(__file__).resolve().parent


def names():
    """The names of the ready-made graphs, sorted (file stems of ``causalppl/graphs/*.dot``)."""
    if not GRAPHS_DIR.is_dir():
        return []
    return sorted(p.stem for p in GRAPHS_DIR.glob("*.dot"))


def path(name):
    """The DOT file of graph ``name``; ``KeyError`` listing the available names if there is none."""
    if not GRAPHS_DIR.is_dir():
        raise FileNotFoundError(
            f"the graphs folder '{GRAPHS_DIR}' is missing: reinstall causalppl"
        )
    available = names()
    if name not in available:
        raise KeyError(f"no graph named {name!r}; available: {', '.join(available) or 'none'}")
    return GRAPHS_DIR / f"{name}.dot"


def load(name):
    """The SCM of graph ``name`` (see :func:`names`).

    >>> import causalppl as cp
    >>> cp.graphs.load("confounded").nodes
    ('z', 'x', 'y')
    """
    return read_dot(path(name))
