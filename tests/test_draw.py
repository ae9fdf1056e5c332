"""Drawing with Graphviz: the SVG read as a person would, PNG bytes, and a missing `dot`."""

import importlib
import shutil
import xml.etree.ElementTree as ET

import pytest
import torch

import causalppl as cp
from causalppl.graph.draw import GraphvizNotFound, draw, render_svg

# causalppl.graph.draw is the draw() function in the package namespace; this is the module.
draw_module = importlib.import_module("causalppl.graph.draw")
SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


def svg_picture(svg_text):
    """What the drawing shows: node title -> {texts, shapes, fills, dashes}, and the edge titles."""
    root = ET.fromstring(svg_text)
    nodes, edges = {}, set()
    for group in root.iter(f"{SVG}g"):
        kind = group.get("class")
        title = group.findtext(f"{SVG}title")
        if kind == "node":
            shapes = [child for child in group if child.tag in (f"{SVG}ellipse", f"{SVG}polygon")]
            nodes[title] = {
                "texts": [t.text for t in group.iter(f"{SVG}text")],
                "shapes": [s.tag.removeprefix(SVG) for s in shapes],
                "fills": [s.get("fill") for s in shapes],
                "dashes": [s.get("stroke-dasharray") for s in shapes],
            }
        elif kind == "edge":
            edges.add(title)
    return nodes, edges


@needs_dot
def test_svg_shows_surgery():
    scm = cp.graphs.load("confounded").do(x=1.0).condition(y=2.0)
    nodes, edges = svg_picture(render_svg(scm))
    assert set(nodes) == {"z", "x", "y"}
    # the intervened node is a box with its value in the label
    assert nodes["x"]["shapes"] == ["polygon"] and nodes["x"]["texts"] == ["x = 1.0"]
    # the observed node is filled, the plain one is not
    assert nodes["y"]["shapes"] == ["ellipse"] and nodes["y"]["fills"][0] not in (None, "none")
    assert nodes["z"]["fills"] == ["none"] and nodes["z"]["texts"] == ["z"]
    # the edge do() cut is gone, the others remain
    assert edges == {"z->y", "x->y"}
    assert "z->x" not in edges


@needs_dot
def test_svg_shows_inputs_dashed_and_latents_dotted():
    nodes, edges = svg_picture(render_svg(cp.graphs.load("scale")))
    assert nodes["guess"]["dashes"][0] is not None  # dashed outline
    assert nodes["weight"]["dashes"] == [None]
    assert edges == {"guess->weight", "weight->measurement"}
    nodes, _ = svg_picture(render_svg(cp.graphs.load("instrument")))
    assert nodes["u"]["dashes"][0] is not None  # dotted outline
    assert nodes["x"]["dashes"] == [None]


@needs_dot
def test_draw_svg_and_png_files(tmp_path):
    scm = cp.graphs.load("sprinkler").do(sprinkler=1.0)
    svg = draw(scm, tmp_path / "sprinkler.svg")
    nodes, edges = svg_picture(svg.read_text())
    assert "cloudy->sprinkler" not in edges and "sprinkler->wet" in edges
    png = draw(scm, str(tmp_path / "sprinkler.png"))
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    other = draw(scm, tmp_path / "picture.out", format="svg")
    assert other.read_text().lstrip().startswith("<?xml")
    assert scm.draw(tmp_path / "via_method.svg").exists()


@needs_dot
def test_repr_svg_for_notebooks():
    svg = cp.graphs.load("scale")._repr_svg_()
    assert svg is not None and "<svg" in svg


def test_dot_extension_writes_text_without_graphviz(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    scm = cp.graphs.load("m_bias")
    for name in ("m_bias.dot", "m_bias.gv"):
        path = draw(scm, tmp_path / name)
        assert cp.read_dot(path).nodes == scm.nodes


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot tell the format.*'svg'"):
        draw(cp.graphs.load("scale"), tmp_path / "picture.jpeg2000")


def test_missing_graphviz_writes_dot_and_explains(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    scm = cp.graphs.load("smoking").do(smoking=1.0)
    target = tmp_path / "smoking.svg"
    with pytest.raises(GraphvizNotFound) as caught:
        draw(scm, target)
    message = str(caught.value)
    fallback = tmp_path / "smoking.dot"
    assert "dot" in message and "not found" in message
    assert "apt-get install graphviz" in message and "brew install graphviz" in message
    assert "conda" in message and str(fallback) in message
    assert isinstance(caught.value, RuntimeError)
    assert not target.exists() and fallback.exists()
    back = cp.read_dot(fallback)
    assert back.interventions.keys() == {"smoking"}
    with pytest.raises(GraphvizNotFound, match="apt-get install graphviz"):
        render_svg(scm)
    assert scm._repr_svg_() is None  # notebooks fall back to the text repr


def test_graphviz_failure_is_reported(monkeypatch, tmp_path):
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho 'Error: something broke' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(draw_module, "_dot_binary", lambda: str(fake))
    with pytest.raises(RuntimeError, match="exit 3.*something broke"):
        render_svg(cp.graphs.load("scale"))


def test_dot_labels_show_state_labels_and_keep_codes():
    scm = (cp.SCM()
           .add("either", "Bernoulli(0.5)", labels=("no", "yes"))
           .add("dysp", "Bernoulli(0.1 + 0.7*either)", labels=("no", "yes")))
    text = scm.do(either="yes").condition(dysp="no").to_dot()
    assert 'label="either = yes"' in text and 'label="dysp = no"' in text
    assert "intervened=1.0" in text and "observed=0.0" in text  # the file keeps the codes
    assert cp.read_dot(text).interventions == {"either": torch.tensor(1.0)}


@needs_dot
def test_svg_shows_state_labels():
    scm = (cp.SCM()
           .add("either", "Bernoulli(0.5)", labels=("no", "yes"))
           .add("dysp", "Bernoulli(0.1 + 0.7*either)", labels=("no", "yes")))
    nodes, _ = svg_picture(render_svg(scm.do(either=1.0).condition(dysp="yes")))
    assert nodes["either"]["texts"] == ["either = yes"]
    assert nodes["dysp"]["texts"] == ["dysp = yes"]


# -- rankdir, mechanisms, legend, fitted columns ------------------------------------------------


def test_dot_text_honours_rankdir_shows_mechanisms_and_marks_fitted_columns():
    assert "rankdir=TB;" in cp.graphs.load("sprinkler").to_dot()  # the file's own direction
    text = cp.graphs.load("confounded").to_dot(show="mechanisms")
    assert 'label="y\\nNormal(2*x + 3*z, 1.0)"' in text
    cp.set_rng_seed(0)
    data = cp.graphs.load("confounded").sample(200)
    data = {"x": data["x"], "y": data["y"]}
    fitted = cp.SCM.from_graph(cp.graphs.load("confounded"), data)
    fitted.fit(data, steps=5, progress=False)
    lines = {line.split(" ")[0]: line for line in fitted.to_dot().splitlines() if "->" not in line}
    assert "peripheries=2" in lines["x"] and "peripheries=2" in lines["y"] and "peripheries" not in lines["z"]


@needs_dot
def test_pictures_have_a_legend_that_reading_skips(tmp_path):
    scm = cp.graphs.load("smoking").do(smoking=1.0)
    nodes, _ = svg_picture(draw(scm, tmp_path / "s.svg").read_text())
    legend = {title for title in nodes if title.startswith("legend_")}
    assert {"legend_observed", "legend_intervened", "legend_latent"} <= legend
    assert "cut" in " ".join(nodes["legend_intervened"]["texts"])
    assert cp.read_dot(scm.to_dot(legend=True)).nodes == scm.nodes
    assert not any(t.startswith("legend_") for t in svg_picture(render_svg(scm))[0])  # notebooks: none
