"""The ready-made graphs: each loads and samples; kidney stones reproduce Simpson's paradox."""

import math

import pytest
import torch

import causalppl as cp

EXPECTED = {"scale", "sprinkler", "smoking", "confounded", "instrument", "kidney_stones", "m_bias",
            "mediator"}
INPUTS = {"scale": {"guess": 8.5}}
BINARY = {"sprinkler", "smoking", "kidney_stones"}


def test_names_lists_every_dot_file():
    names = cp.graphs.names()
    assert EXPECTED <= set(names) and len(names) >= 8
    assert names == sorted(names)
    for name in names:
        assert cp.graphs.path(name).is_file()


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(KeyError, match="no graph named 'sprinkle'.*available: .*sprinkler"):
        cp.graphs.load("sprinkle")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_graph_starts_with_its_story(name):
    text = cp.graphs.path(name).read_text()
    assert text.startswith("//") and len(text.split("digraph")[0]) > 80


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_graph_loads_and_samples(name):
    cp.set_rng_seed(0)
    scm = cp.graphs.load(name)
    values = scm.sample(500, **INPUTS.get(name, {}))
    assert set(values) == set(scm.nodes)
    for node, value in values.items():
        assert value.shape == (500,), node
        assert torch.isfinite(value).all(), node
        if name in BINARY:
            assert set(value.unique().tolist()) <= {0.0, 1.0}, node


def test_latent_nodes_are_marked():
    assert cp.graphs.load("smoking").latent == {"u"}
    assert cp.graphs.load("instrument").latent == {"u"}
    assert cp.graphs.load("scale").inputs == ("guess",)


def test_confounded_interventional_mean():
    cp.set_rng_seed(1)
    n = 20_000
    y = cp.graphs.load("confounded").do(x=1.0).sample(n)["y"]
    assert abs(float(y.mean()) - 2.0) < 4 * math.sqrt(10.0 / n)


def test_sprinkler_marginal_of_wet_grass():
    cp.set_rng_seed(2)
    n = 50_000
    wet = cp.graphs.load("sprinkler").sample(n)["wet"]
    # P(wet) = sum over cloudy, sprinkler, rain of the classic CPTs
    exact = 0.0
    for cloudy in (0, 1):
        p_s = 0.1 if cloudy else 0.5
        p_r = 0.8 if cloudy else 0.2
        for s in (0, 1):
            for r in (0, 1):
                p_w = {(0, 0): 0.0, (0, 1): 0.9, (1, 0): 0.9, (1, 1): 0.99}[(s, r)]
                exact += 0.5 * (p_s if s else 1 - p_s) * (p_r if r else 1 - p_r) * p_w
    assert abs(float(wet.mean()) - exact) < 4 * math.sqrt(exact * (1 - exact) / n)


def rate(recovery, mask):
    """Recovery rate in a subgroup and its standard error."""
    count = int(mask.sum())
    p = float(recovery[mask].mean())
    return p, math.sqrt(max(p * (1 - p), 1e-4) / count)


def test_kidney_stones_reproduce_simpsons_paradox():
    cp.set_rng_seed(3)
    n = 200_000
    values = cp.graphs.load("kidney_stones").sample(n)
    large, a, recovery = values["large"] > 0.5, values["treatment"] > 0.5, values["recovery"]
    groups = {
        "overall": (torch.ones(n, dtype=torch.bool), 273 / 350, 289 / 350),
        "small": (~large, 81 / 87, 234 / 270),
        "large": (large, 192 / 263, 55 / 80),
    }
    for label, (stratum, exact_a, exact_b) in groups.items():
        p_a, se_a = rate(recovery, stratum & a)
        p_b, se_b = rate(recovery, stratum & ~a)
        assert abs(p_a - exact_a) < 4 * se_a, (label, "A", p_a, exact_a)
        assert abs(p_b - exact_b) < 4 * se_b, (label, "B", p_b, exact_b)
        gap = p_a - p_b
        margin = 3 * math.hypot(se_a, se_b)
        if label == "overall":
            assert gap < -margin, f"A should look worse overall: {p_a:.3f} vs {p_b:.3f}"
        else:
            assert gap > margin, f"A should be better for {label} stones: {p_a:.3f} vs {p_b:.3f}"
    # the confounder's own numbers
    assert abs(float(large.float().mean()) - 343 / 700) < 4 * math.sqrt(0.25 / n)
