"""Synthetic data sets: shapes and dtypes, seeding, and the causal truth each one claims.

Numerical checks compare an estimate with the analytic truth within 4 standard
errors computed from the sample at hand.
"""

import math

import networkx as nx
import pandas as pd
import pytest
import torch

from causalppl import datasets
from causalppl.datasets import (
    JOB_TRAINING_ATE,
    MARKETING_SEGMENTS,
    job_training,
    job_training_graph,
    marketing_uplift,
    marketing_uplift_ate,
    marketing_uplift_graph,
    random_discrete_network,
    random_linear_scm_data,
)

# Big columns but few of them: a second torch thread mostly waits on a busy machine.
pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def ols(y, *columns):
    """Least squares of ``y`` on an intercept and ``columns``: (coefficients, standard errors, residual sd)."""
    y = torch.as_tensor(y, dtype=torch.float64)
    x = torch.stack([torch.ones_like(y)] + [torch.as_tensor(c, dtype=torch.float64) for c in columns], dim=1)
    gram_inverse = torch.linalg.inv(x.T @ x)  # float64 normal equations: a few columns, well conditioned
    coef = gram_inverse @ (x.T @ y)
    residual = y - x @ coef
    sigma = (residual.square().sum() / (len(y) - x.shape[1])).sqrt()
    se = sigma * gram_inverse.diagonal().sqrt()
    return coef, se, float(sigma)


def column(df, name):
    return torch.tensor(df[name].to_numpy(), dtype=torch.float64)


# --- job training -----------------------------------------------------------


def test_job_training_columns_dtypes_and_raw_units():
    df = job_training(n=5000, seed=0)
    assert list(df.columns) == ["age", "education", "married", "training", "hours", "earnings"]
    assert df.shape == (5000, 6)
    for name in ("age", "education", "hours", "earnings"):
        assert df[name].dtype == "float64", name
    assert df["married"].dtype == bool and df["training"].dtype == bool
    assert (df["education"] == df["education"].round()).all()
    # Raw units, on purpose: age around 35 (sd ~10), education ~12 years, earnings 20-30 thousand.
    assert abs(df["age"].mean() - 35) < 2 and 8 < df["age"].std() < 12
    assert abs(df["education"].mean() - 12) < 0.5
    assert 20 < df["earnings"].mean() < 30
    assert 0.1 < df["training"].mean() < 0.5


def test_job_training_graph_is_the_scm():
    graph = job_training_graph()
    assert set(graph.edges) == {
        ("age", "training"), ("education", "training"), ("married", "training"),
        ("age", "hours"), ("training", "hours"),
        ("age", "earnings"), ("education", "earnings"), ("married", "earnings"),
        ("training", "earnings"), ("hours", "earnings"),
    }
    assert set(graph.nodes) == set(job_training(n=3).columns)
    assert nx.is_directed_acyclic_graph(graph)


def test_job_training_ate_is_2_3_by_regression_adjustment():
    assert JOB_TRAINING_ATE == 2.3
    assert datasets._TRAINING_TO_EARNINGS + datasets._TRAINING_TO_HOURS * datasets._HOURS_TO_EARNINGS == 2.3
    df = job_training(n=400_000, seed=1)
    y, t = column(df, "earnings"), column(df, "training")
    covariates = [column(df, c) for c in ("age", "education", "married")]

    # Backdoor adjustment for age, education, married; hours is a mediator, so it stays out.
    coef, se, _ = ols(y, t, *covariates)
    assert abs(coef[1] - JOB_TRAINING_ATE) < 4 * se[1], (float(coef[1]), float(se[1]))

    # Adjusting for the mediator as well leaves only the direct effect, 1.5.
    coef, se, _ = ols(y, t, *covariates, column(df, "hours"))
    assert abs(coef[1] - 1.5) < 4 * se[1], (float(coef[1]), float(se[1]))

    # The treatment is confounded: the naive difference in means is far from the truth.
    naive, naive_se, _ = ols(y, t)
    assert abs(naive[1] - JOB_TRAINING_ATE) > 20 * naive_se[1]


# --- marketing uplift -------------------------------------------------------


def test_marketing_uplift_columns_and_dtypes():
    df = marketing_uplift(n=5000, seed=0)
    assert list(df.columns) == ["segment", "visits", "treated", "converted"]
    assert isinstance(df["segment"].dtype, pd.CategoricalDtype)
    assert list(df["segment"].cat.categories) == list(MARKETING_SEGMENTS) == ["new", "returning", "loyal"]
    assert set(df["segment"]) == set(MARKETING_SEGMENTS)
    assert df["visits"].dtype == "float64" and df["visits"].between(0, 12).all()
    assert (df["visits"] == df["visits"].round()).all()
    assert df["treated"].dtype == bool and df["converted"].dtype == bool
    assert set(marketing_uplift_graph().edges) == {
        ("segment", "visits"), ("segment", "treated"), ("visits", "treated"),
        ("segment", "converted"), ("visits", "converted"), ("treated", "converted"),
    }


def test_marketing_uplift_ate_matches_the_generator_under_do():
    n = 400_000
    # Both arms from the same seed share every draw but the treatment (common random numbers).
    treated = datasets._marketing_columns(n, seed=3, treated=True)
    control = datasets._marketing_columns(n, seed=3, treated=False)
    assert torch.equal(treated["visits"], control["visits"])
    difference = treated["converted"].double() - control["converted"].double()
    estimate, se = float(difference.mean()), float(difference.std() / math.sqrt(n))
    exact = marketing_uplift_ate()
    assert abs(estimate - exact) < 4 * se, (estimate, exact, se)
    assert 0.05 < exact < 0.1

    # Observationally, treated customers are the ones who would have converted anyway.
    df = marketing_uplift(n=n, seed=4)
    naive = df.loc[df["treated"], "converted"].mean() - df.loc[~df["treated"], "converted"].mean()
    assert naive > exact + 0.05


# --- random discrete network -----------------------------------------------


def test_random_discrete_network_structure_and_cpts():
    net = random_discrete_network(seed=0)
    graph = net.graph
    assert list(graph.nodes) == [f"n{i:02d}" for i in range(37)]
    assert nx.is_directed_acyclic_graph(graph)
    assert max(d for _, d in graph.in_degree()) <= 3
    assert set(net.cardinality.values()) <= {2, 3, 4} and len(set(net.cardinality.values())) > 1
    assert net.labels is None
    peaked = 0
    for node, cpt in net.cpts.items():
        parents = list(graph.predecessors(node))
        assert cpt.shape == tuple(net.cardinality[p] for p in parents) + (net.cardinality[node],), node
        assert (cpt >= 0).all(), node
        torch.testing.assert_close(cpt.sum(-1), torch.ones(cpt.shape[:-1]), rtol=0, atol=1e-5)
        peaked += int((cpt.max(-1).values > 0.8).sum())
    assert peaked > 0  # flat Dirichlet rows: some are peaked


def test_random_discrete_network_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_states"):
        random_discrete_network(max_states=1)
    with pytest.raises(ValueError, match="num_nodes"):
        random_discrete_network(num_nodes=0)
    with pytest.raises(TypeError, match="n must be an integer"):
        job_training(n=10.5)


def _assert_frequencies_match(codes, probs, what):
    """Empirical frequencies of ``codes`` against ``probs`` within 4 binomial standard errors."""
    n = len(codes)
    freq = torch.bincount(codes, minlength=len(probs)).double() / n
    probs = probs.double()
    se = (probs * (1 - probs) / n).sqrt()
    assert ((freq - probs).abs() < 4 * se + 1e-12).all(), (what, freq.tolist(), probs.tolist())


def test_random_discrete_network_samples_follow_the_cpts():
    net = random_discrete_network(seed=0)
    rows = net.sample(50_000, seed=1)
    assert list(rows.columns) == list(net.graph.nodes) and len(rows) == 50_000
    assert all(str(rows[c].dtype) == "int64" for c in rows.columns)
    for node, card in net.cardinality.items():
        assert rows[node].between(0, card - 1).all(), node

    # A root's column follows its CPT.
    _assert_frequencies_match(torch.tensor(rows["n00"].to_numpy()), net.cpts["n00"], "n00")

    # A child with parents of unequal cardinalities, given its most common parent state:
    # this catches parents gathered in the wrong order.
    node = next(v for v in net.graph.nodes
                if len({net.cardinality[p] for p in net.graph.predecessors(v)}) > 1)
    parents = list(net.graph.predecessors(node))
    state = rows.groupby(parents).size().idxmax()
    given = (rows[parents] == list(state)).all(axis=1)
    assert given.sum() > 2000
    codes = torch.tensor(rows.loc[given, node].to_numpy())
    _assert_frequencies_match(codes, net.cpts[node][tuple(state)], node)


# --- random linear SCM --------------------------------------------------------


def test_random_linear_scm_data_shapes_and_raw_scales():
    graph, df, truth = random_linear_scm_data(seed=0)
    assert list(df.columns) == list(graph.nodes) == [f"x{i:02d}" for i in range(20)]
    assert df.shape == (100_000, 20) and (df.dtypes == "float64").all()
    assert nx.is_directed_acyclic_graph(graph) and graph.number_of_edges() > 20
    for node in graph.nodes:
        assert list(truth[node]["weights"]) == list(graph.predecessors(node))
        assert truth[node]["scale"] > 0
    means, sds = df.mean().abs(), df.std()
    assert means.min() > 5 and means.max() > 100 and means.max() < 1000
    assert sds.max() / sds.min() > 10


def test_random_linear_scm_data_least_squares_recovers_the_truth():
    graph, df, truth = random_linear_scm_data(seed=0)
    n = len(df)
    for node in graph.nodes:
        parents = list(graph.predecessors(node))
        coef, se, sigma = ols(column(df, node), *(column(df, p) for p in parents))
        expected = torch.tensor([truth[node]["bias"]] + [truth[node]["weights"][p] for p in parents],
                                dtype=torch.float64)
        assert ((coef - expected).abs() < 4 * se).all(), (node, coef.tolist(), expected.tolist())
        scale = truth[node]["scale"]
        assert abs(sigma - scale) < 4 * scale / math.sqrt(2 * n), (node, sigma, scale)


# --- all generators -------------------------------------------------------------


GENERATORS = {
    "job_training": lambda seed: job_training(n=200, seed=seed),
    "marketing_uplift": lambda seed: marketing_uplift(n=200, seed=seed),
    "random_discrete_network": lambda seed: random_discrete_network(seed=seed).sample(200, seed=seed),
    "random_linear_scm_data": lambda seed: random_linear_scm_data(num_nodes=5, n=200, seed=seed)[1],
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generators_are_seeded_and_leave_the_global_rng_alone(name):
    generate = GENERATORS[name]
    state = torch.get_rng_state()
    first = generate(0)
    assert torch.equal(torch.get_rng_state(), state)
    pd.testing.assert_frame_equal(first, generate(0))
    assert not first.equals(generate(1))


def test_random_discrete_network_is_seeded():
    a, b, c = random_discrete_network(seed=5), random_discrete_network(seed=5), random_discrete_network(seed=6)
    assert list(a.graph.edges) == list(b.graph.edges) and a.cardinality == b.cardinality
    assert all(torch.equal(a.cpts[v], b.cpts[v]) for v in a.cpts)
    assert list(a.graph.edges) != list(c.graph.edges)


def test_without_pandas_tables_are_dicts_of_tensors(monkeypatch):
    monkeypatch.setattr(datasets, "pd", None)
    jobs = job_training(n=10)
    assert isinstance(jobs, dict) and list(jobs) == list(job_training_graph().nodes)
    assert jobs["training"].dtype == torch.bool and jobs["earnings"].dtype == torch.float64
    marketing = marketing_uplift(n=10)
    assert marketing["segment"].dtype == torch.int64 and marketing["converted"].dtype == torch.bool
    rows = random_discrete_network(num_nodes=4).sample(10)
    assert all(v.dtype == torch.int64 and v.shape == (10,) for v in rows.values())
    _, data, _ = random_linear_scm_data(num_nodes=3, n=10)
    assert all(v.dtype == torch.float64 for v in data.values())
