"""Drawing an SCM with Graphviz: SVG / PNG / PDF files, or SVG text for notebooks.

The picture is the DOT text of :func:`causalppl.graph.dot.to_dot`, laid out
by Graphviz's ``dot`` program in the file's ``rankdir``: observed nodes
filled, intervened nodes boxed with their value in the label (its state
label, for a node with labels), inputs dashed, latent nodes dotted and grey,
the data columns of the last fit with a double outline, and the edges ``do``
cut simply absent (they are absent from ``scm.graph``). Pictures carry a
legend of these styles; ``show="mechanisms"`` writes each mechanism under
its node's name.

>>> import causalppl as cp
>>> scm = cp.SCM().add("z", "Normal(0, 1)").add("x", "Normal(z, 1)")
>>> svg = render_svg(scm.do(x=1.0))  # doctest: +SKIP
>>> "x = 1.0" in svg  # doctest: +SKIP
True
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from causalppl.graph.dot import to_dot

TEXT_SUFFIXES = {".dot", ".gv"}
FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}
INSTALL_HINT = (
    "install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) "
    "or `conda install -c conda-forge graphviz`"
)
TIMEOUT_S = 60


class GraphvizNotFound(RuntimeError):
    """Graphviz's ``dot`` program is not on the PATH."""


def _dot_binary():
    return shutil.which("dot")


def render(scm, format="svg", **dot_options):
    """The bytes Graphviz draws for ``scm`` in ``format`` (``svg``, ``png``, ``pdf``, ...).

    Raises :class:`GraphvizNotFound` when ``dot`` is missing and
    ``RuntimeError`` with Graphviz's message when it fails.
    """
    return run_dot(to_dot(scm, **dot_options), format, "scm.to_dot() gives the DOT text without it.")


def run_dot(text, format="svg", without=""):
    """The bytes Graphviz's ``dot -T{format}`` draws for the DOT ``text``.

    ``without`` ends the message of :class:`GraphvizNotFound` (what to do instead).
    """
    binary = _dot_binary()
    if binary is None:
        raise GraphvizNotFound(f"Graphviz's `dot` program was not found on the PATH; {INSTALL_HINT}. {without}")
    try:
        done = subprocess.run([binary, f"-T{format}"], input=text.encode("utf-8"),
                              capture_output=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"Graphviz's dot took more than {TIMEOUT_S} s to draw the graph") from err
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", errors="replace").strip()
        raise RuntimeError(f"Graphviz's dot -T{format} failed (exit {done.returncode}): {message}")
    return done.stdout


def render_svg(scm, **dot_options):
    """SVG text of the DAG (what ``SCM._repr_svg_`` shows in a notebook).

    >>> import causalppl as cp
    >>> render_svg(cp.SCM().add("z", "Normal(0, 1)")).lstrip().startswith("<?xml")  # doctest: +SKIP
    True
    """
    return render(scm, "svg", **dot_options).decode("utf-8")


def draw(scm, path, format=None, legend=None, **dot_options):
    """Draw ``scm`` into ``path``; return the path written (a ``pathlib.Path``).

    Parameters
    ----------
    scm : SCM
    path : str or pathlib.Path
        Where to write. The extension picks the format: ``.svg``, ``.png``,
        ``.pdf``, or ``.dot`` / ``.gv`` for the DOT text itself.
    format : str, optional
        A Graphviz output format (``"svg"``, ``"png"``, ``"dot"``, ...) that
        overrides the extension.
    legend : bool, optional
        A legend of the styles (observed, intervened with its incoming edges
        cut, latent, fitted data columns, inputs); by default in pictures, not
        in ``.dot`` text.
    **dot_options
        Passed to :func:`~causalppl.graph.dot.to_dot`: ``rankdir="TB"`` (by
        default the file's own), ``show="mechanisms"`` (each node's mechanism
        under its name).

    Raises
    ------
    GraphvizNotFound
        When Graphviz's ``dot`` is missing; the DOT text is then written next
        to ``path`` (same stem, ``.dot``) and the message says where.
    ValueError
        When neither the extension nor ``format`` names a known format.

    Examples
    --------
    >>> import causalppl as cp, tempfile, pathlib
    >>> scm = cp.SCM().add("z", "Normal(0, 1)").add("x", "Normal(z, 1)")
    >>> out = draw(scm, pathlib.Path(tempfile.mkdtemp()) / "zx.dot")
    >>> out.read_text().startswith("// causalppl SCM")
    True
    """
    path = Path(path)
    if format is None:
        format = FORMATS.get(path.suffix.lower())
        if format is None:
            raise ValueError(f"draw: cannot tell the format of '{path}' from its extension; use one of "
                             f"{', '.join(sorted(FORMATS))} or pass format='svg' / 'png' / 'dot'")
    format = format.lower().lstrip(".")
    if legend is None:
        legend = format not in ("dot", "gv")
    dot_options["legend"] = legend
    if format in ("dot", "gv"):
        path.write_text(to_dot(scm, **dot_options), encoding="utf-8")
        return path
    if _dot_binary() is None:
        fallback = path.with_suffix(".dot")
        fallback.write_text(to_dot(scm, **dot_options), encoding="utf-8")
        raise GraphvizNotFound(
            f"cannot draw '{path}': Graphviz's `dot` program was not found on the PATH; {INSTALL_HINT}. "
            f"The DOT text was written to '{fallback}' (render it later with `dot -T{format} {fallback}`)."
        )
    path.write_bytes(render(scm, format, **dot_options))
    return path
