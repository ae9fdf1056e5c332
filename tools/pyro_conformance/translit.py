r"""Transliterate Pyro test files to causalppl, mechanically (what the conformance check does).

usage: python translit.py SRC_DIR DST_DIR

SRC_DIR holds Pyro test files laid out as in Pyro's repository (``tests/...``);
DST_DIR gets the same tree with ``pyro.poutine`` -> ``causalppl.handlers``,
``import pyro`` -> ``import causalppl as cp``, ``from pyro.X import`` ->
``from causalppl.X import`` and ``pyro.`` -> ``cp.``.

>>> print(translit("import pyro.poutine as poutine\nx = pyro.sample('x', d)"))
import causalppl.handlers as poutine
x = cp.sample('x', d)
"""
import pathlib
import re
import sys

RULES = [
    (r"\bpyro\.poutine\b", "pyro.handlers"),
    (r"^(\s*)import pyro\s*$", r"\1import causalppl as cp"),
    (r"^(\s*)import pyro\.([\w.]+) as (\w+)", r"\1import causalppl.\2 as \3"),
    (r"^(\s*)import pyro\.([\w.]+)\s*$", r"\1import causalppl.\2"),
    (r"^(\s*)from pyro\.([\w.]+) import", r"\1from causalppl.\2 import"),
    (r"^(\s*)from pyro import", r"\1from causalppl import"),
    (r"\bpyro\.", "cp."),
]

def translit(text):
    for pat, rep in RULES:
        text = re.sub(pat, rep, text, flags=re.M)
    return text

if __name__ == "__main__":
    src, dst = map(pathlib.Path, sys.argv[1:3])
    for path in src.rglob("*.py"):
        out = dst / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(translit(path.read_text()))
        print("wrote", out)
