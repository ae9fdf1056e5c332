"""Results out: to_frame() and to_dict() on samples, effects, queries, identification and fits."""

import json

import pytest

import causalppl as cp


def test_samples_effect_query_identification_and_fit_have_frames_and_dicts():
    cp.set_rng_seed(0)
    scm = cp.SCM().add("t", "Bernoulli(0.5)", labels=("no", "yes")).add("y", "Normal(2*t, 1)")
    samples = scm.sample(50)
    frame = samples.to_frame()
    assert list(frame.columns) == ["t", "y"] and set(frame["t"].cat.categories) == {"no", "yes"}
    assert len(json.dumps(samples.to_dict())) > 0 and len(samples.to_dict()["y"]) == 50

    effect = cp.causal.ate(scm, "t", "y", treated="yes", control="no", n=2000)
    data = effect.to_dict()
    assert data["ate"] == pytest.approx(2.0, abs=0.2) and data["treated"] == "yes" and len(data["interval"]) == 2
    assert list(effect.to_frame()[["ate", "low", "high"]].shape) == [1, 3]
    json.dumps(data)

    query = cp.causal.interventional(scm, do={"t": "yes"}, n=500)
    assert query.to_dict()["nodes"]["y"]["mean"] == pytest.approx(2.0, abs=0.3)
    assert list(query.to_frame()["t"].unique()) == ["yes"]

    found = cp.causal.identify(cp.graphs.load("confounded"), "x", "y")
    assert found.to_dict()["backdoor_sets"] == [["z"]] and json.dumps(found.to_dict())
    assert found.to_frame().to_dict("records")[0] == {"kind": "backdoor", "nodes": "z"}

    rows = scm.sample(500)
    learned = cp.SCM.from_graph([("t", "y")], rows)
    result = learned.fit(rows)
    assert result.to_dict()["method"] == "mle" and "y.weight" in result.to_dict()["params"]
    assert "estimate" in result.to_frame().columns
    json.dumps(result.to_dict())
