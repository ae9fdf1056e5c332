"""The workloads every backend of ``compare.py`` runs, their data, and how answers are compared.

A workload is plain data (:class:`Workload`); :func:`make_data` draws its
data from numpy with a fixed seed, so every backend fits the same arrays
(``sha`` fingerprints them). A backend's answer is a small dict in one
canonical form per kind (:func:`answer_error` reads it):

- ``scale``: ``{"a": loc, "b": scale}`` of the guide over ``weight``;
- ``linear``: ``{"w": [...], "b": [...]}``, posterior means of the edge
  weights in edge order (by child, then parent) and of the node biases, in
  the data's units;
- ``confounder``: ``{"beta": ..., "a": ..., "c": ...}``.

>>> data = make_data(WORKLOADS["L10"].scaled(rows=500))
>>> data["X"].shape, data["E"] == len(data["src"])
((500, 10), True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np

LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark workload.

    ``kind`` is ``"scale"`` (W1), ``"linear"`` (a linear-Gaussian SCM) or
    ``"confounder"`` (W5). ``steps`` is the length of the run whose final
    params are compared (the answer check); ``tol`` the largest absolute
    difference from the floor's answer that still counts as the same answer.
    """

    name: str
    kind: str
    what: str
    steps: int
    lr: float
    tol: float
    nodes: int = 0
    rows: int = 0
    batch: int | None = None
    edge_prob: float | None = None  # None: about two parents per node

    def scaled(self, nodes=None, rows=None, steps=None, batch=None):
        """The same workload at another size (nodes and rows of a linear SCM, the answer run's steps)."""
        changes = {}
        if nodes is not None:
            changes.update(nodes=nodes, edge_prob=None if nodes != self.nodes else self.edge_prob)
        if rows is not None:
            changes["rows"] = rows
        if steps is not None:
            changes["steps"] = steps
        if batch is not None:
            changes["batch"] = batch
        if not changes:
            return self
        sized = dataclasses.replace(self, **changes)
        if sized.batch is not None and sized.rows and sized.batch >= sized.rows:
            sized = dataclasses.replace(sized, batch=max(1, sized.rows // 4))
        return sized

    @property
    def label(self):
        if self.kind != "linear":
            return self.name
        rows = f"{self.rows:,}"
        batch = f", batch {self.batch:,}" if self.batch else ""
        return f"{self.name} ({self.nodes} nodes, {rows} rows{batch})"


WORKLOADS = {
    "W1": Workload("W1", "scale", "intro scale model, its hand-written guide, SGD(lr 1e-3, momentum 0.1)",
                   steps=2500, lr=1e-3, tol=0.15),
    "W3": Workload("W3", "linear", "20-node linear-Gaussian SCM, AutoNormal, Adam(0.02), full batch",
                   steps=1000, lr=0.02, tol=0.05, nodes=20, rows=100_000, edge_prob=40 / 190),
    # Minibatch SVI jitters by a few hundredths in standardised units; scm.fit's data-unit answers
    # carry that times the node's sd (up to ~3 here), hence the wider tolerance.
    "W4": Workload("W4", "linear", "W3 with plate subsample 1024",
                   steps=2000, lr=0.02, tol=0.12, nodes=20, rows=100_000, batch=1024, edge_prob=40 / 190),
    "W5": Workload("W5", "confounder", "U -> X, (X, U) -> Y, U latent per row, AutoNormal, Adam(0.01)",
                   steps=2000, lr=0.01, tol=0.15, rows=10_000),
    "L10": Workload("L10", "linear", "10-node linear-Gaussian SCM, full batch",
                    steps=400, lr=0.02, tol=0.06, nodes=10, rows=100_000),
    "L50": Workload("L50", "linear", "50-node linear-Gaussian SCM, full batch",
                    steps=400, lr=0.02, tol=0.06, nodes=50, rows=100_000),
    "L200": Workload("L200", "linear", "200-node linear-Gaussian SCM, full batch",
                     steps=300, lr=0.02, tol=0.08, nodes=200, rows=100_000),
}

# W1's numbers (the Pyro intro tutorial): prior N(guess, 1), measurement N(weight, 0.75).
GUESS, MEASUREMENT, PRIOR_SD, NOISE_SD = 8.5, 9.5, 1.0, 0.75
# W5's truth: X = a U + e, Y = beta X + c U + e, e ~ N(0, 0.5); N(0, 10) priors on a, beta, c.
CONFOUNDER = {"a": 1.0, "beta": 2.0, "c": 3.0}
CONFOUNDER_SD, CONFOUNDER_PRIOR_SD = 0.5, 10.0

DATA_SEED = 0


def _sha(*arrays):
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:12]


def make_data(workload, seed=DATA_SEED):
    """The workload's data and truth: numpy arrays and plain numbers (see the module docstring)."""
    if workload.kind == "scale":
        mean, sd = scale_posterior()
        return {"sha": "analytic", "truth": {"a": mean, "b": sd}}
    if workload.kind == "confounder":
        return _confounder_data(workload.rows, seed)
    if workload.kind == "linear":
        return linear_scm_data(workload.nodes, workload.rows, workload.edge_prob, seed)
    raise ValueError(f"workload {workload.name}: unknown kind {workload.kind!r}")


def scale_posterior():
    """W1's exact posterior over ``weight``: (mean, sd) of a conjugate Normal."""
    precision = 1 / PRIOR_SD**2 + 1 / NOISE_SD**2
    mean = (GUESS / PRIOR_SD**2 + MEASUREMENT / NOISE_SD**2) / precision
    return mean, precision**-0.5


def linear_scm_data(nodes, rows, edge_prob=None, seed=DATA_SEED):
    """A random DAG over ``nodes`` (topological order 0..D-1), weights, biases and ``rows`` rows.

    Edges i -> j (i < j) appear with probability ``edge_prob`` (default: about
    two parents per node). Weights are +-U(0.5, 2); a node's incoming weights
    are shrunk when its signal's sd would pass 3, so long chains stay tame.
    Unit noise. ``X`` is float32 ``(rows, nodes)``; ``src``/``dst`` list the
    edges by child, then parent; ``parents[j]`` are node j's parents.
    """
    rng = np.random.default_rng(seed)
    p = edge_prob if edge_prob is not None else min(1.0, 4 / max(nodes - 1, 1))
    adjacency = np.triu(rng.random((nodes, nodes)) < p, 1)
    sign = np.where(rng.random((nodes, nodes)) < 0.5, -1.0, 1.0)
    weights = np.where(adjacency, rng.uniform(0.5, 2.0, (nodes, nodes)) * sign, 0.0)
    bias = rng.uniform(-1.0, 1.0, nodes)
    parents = [np.flatnonzero(adjacency[:, j]).tolist() for j in range(nodes)]
    X = np.empty((rows, nodes), dtype=np.float32)
    for j, pa in enumerate(parents):
        signal = X[:, pa].astype(np.float64) @ weights[pa, j] if pa else np.zeros(rows)
        spread = float(signal.std()) if pa and rows > 1 else 0.0
        if spread > 3.0:
            weights[pa, j] *= 3.0 / spread
            signal *= 3.0 / spread
        X[:, j] = signal + bias[j] + rng.standard_normal(rows)
    src = np.array([i for j in range(nodes) for i in parents[j]], dtype=np.int64)
    dst = np.array([j for j in range(nodes) for _ in parents[j]], dtype=np.int64)
    return {"X": X, "src": src, "dst": dst, "parents": parents, "D": nodes, "N": rows, "E": len(src),
            "truth": {"w": weights[src, dst].tolist(), "b": bias.tolist()}, "sha": _sha(X, src, dst)}


def _confounder_data(rows, seed):
    rng = np.random.default_rng(seed)
    t = CONFOUNDER
    U = rng.standard_normal(rows)
    X = t["a"] * U + CONFOUNDER_SD * rng.standard_normal(rows)
    Y = t["beta"] * X + t["c"] * U + CONFOUNDER_SD * rng.standard_normal(rows)
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    return {"X": X, "Y": Y, "N": rows, "truth": dict(t), "sha": _sha(X, Y),
            "naive_beta": float(np.dot(X, Y) / np.dot(X, X))}


def _canonical(kind, answer):
    """A flat vector of the answer's numbers; W5's (a, c, U) -> (-a, -c, -U) symmetry folded by |a|, |c|."""
    if kind == "scale":
        return np.array([answer["a"], abs(answer["b"])])
    if kind == "linear":
        return np.concatenate([np.asarray(answer["w"], dtype=float), np.asarray(answer["b"], dtype=float)])
    if kind == "confounder":
        return np.array([answer["beta"], abs(answer["a"]), abs(answer["c"])])
    raise ValueError(kind)


def answer_error(workload, answer, reference):
    """Largest absolute difference between two answers of ``workload`` (inf when their shapes differ)."""
    a, b = _canonical(workload.kind, answer), _canonical(workload.kind, reference)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return math.inf
    return float(np.max(np.abs(a - b)))
