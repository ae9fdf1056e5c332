"""Counterfactuals by abduction, action and prediction over shared noise.

Each node is read as ``value = f(parents, noise)``:

* location-scale mechanisms (Normal, Laplace, Cauchy, Gumbel, StudentT):
  ``value = loc + scale * noise``, so the noise is recovered exactly;
* Bernoulli and Categorical: Gumbel-max, ``value = argmax(logits + noise)``;
  the noise is drawn from its posterior given the observed argmax;
* other continuous distributions with a ``cdf``/``icdf``: ``noise = cdf(value)``;
* transformed distributions (e.g. LogNormal): the noise of the base
  distribution at the inverse-transformed value.

Abduction draws the factual world (every node) from its posterior given the
evidence -- likelihood weighting by default, or SVI (``method="svi"``) -- and
recovers each node's noise. Prediction replays the same noise in the world
where ``do`` holds: the factual and counterfactual worlds share everything
not downstream of the intervention (a twin network).

>>> import torch, causalppl as cp
>>> scm = cp.graphs.load("confounded")
>>> world = scm.counterfactual(evidence={"z": 1.0, "x": 2.0, "y": 9.0}, do={"x": 0.0}, n=10)
>>> world.samples["y"][:3]
tensor([5., 5., 5.])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import (
    Bernoulli,
    Categorical,
    Cauchy,
    Gumbel,
    Independent,
    Laplace,
    Normal,
    StudentT,
    TransformedDistribution,
)

from causalppl.causal.queries import _fmt, _resample, nodes_only
from causalppl.distributions import Delta
from causalppl.graph.values import check_value
from causalppl.handlers import param_scope

LOCATION_SCALE = (Normal, Laplace, Cauchy, Gumbel, StudentT)


class CounterfactualError(ValueError):
    """A node whose mechanism has no noise model that counterfactuals can share."""


def _gumbel(shape, like):
    uniform = torch.rand(shape, dtype=like.dtype, device=like.device).clamp(1e-12, 1 - 1e-7)
    return -torch.log(-torch.log(uniform))


def _two_class_logits(fn):
    logits = fn.logits
    return torch.stack([torch.zeros_like(logits), logits], -1)


def _posterior_gumbel(logits, index):
    """Gumbel noise g with ``argmax(logits + g) == index``, drawn from its posterior.

    The maximum of ``logits + g`` is Gumbel(logsumexp(logits)); every other
    entry is a Gumbel at its logit truncated below that maximum.
    """
    logits = logits.expand(torch.broadcast_shapes(index.shape, logits.shape[:-1]) + logits.shape[-1:])
    index = index.long().expand(logits.shape[:-1]).unsqueeze(-1)
    top = torch.logsumexp(logits, -1, keepdim=True) + _gumbel(logits.shape[:-1] + (1,), logits)
    others = logits + _gumbel(logits.shape, logits)
    truncated = -torch.log(torch.exp(-top) + torch.exp(-others))
    perturbed = truncated.scatter(-1, index, top)
    return perturbed - logits


def abduct(node, fn, value):
    """The noise that, under mechanism distribution ``fn``, produced ``value``."""
    if isinstance(fn, Delta):
        return None
    if isinstance(fn, Independent):
        return abduct(node, fn.base_dist, value)
    if isinstance(fn, LOCATION_SCALE):
        return (value - fn.loc) / fn.scale
    if isinstance(fn, Bernoulli):
        return _posterior_gumbel(_two_class_logits(fn), value)
    if isinstance(fn, Categorical):
        return _posterior_gumbel(fn.logits, value)
    if isinstance(fn, TransformedDistribution):
        base_value = value
        for transform in reversed(fn.transforms):
            base_value = transform.inv(base_value)
        return abduct(node, fn.base_dist, base_value)
    try:
        return fn.cdf(value)
    except NotImplementedError:
        pass
    raise CounterfactualError(
        f"node '{node}': {type(fn).__name__} has no invertible noise model (location-scale, "
        "Bernoulli/Categorical via Gumbel-max, or a cdf/icdf); counterfactuals cannot share its noise"
    )


def predict(node, fn, noise):
    """The value mechanism distribution ``fn`` gives with ``noise`` (inverse of :func:`abduct`)."""
    if isinstance(fn, Delta):
        return fn.v
    if isinstance(fn, Independent):
        return predict(node, fn.base_dist, noise)
    if isinstance(fn, LOCATION_SCALE):
        return fn.loc + fn.scale * noise
    if isinstance(fn, Bernoulli):
        return (_two_class_logits(fn) + noise).argmax(-1).to(fn.logits.dtype)
    if isinstance(fn, Categorical):
        return (fn.logits + noise).argmax(-1)
    if isinstance(fn, TransformedDistribution):
        value = predict(node, fn.base_dist, noise)
        for transform in fn.transforms:
            value = transform(value)
        return value
    try:
        return fn.icdf(noise)
    except NotImplementedError as err:
        raise CounterfactualError(f"node '{node}': {type(fn).__name__} has no icdf") from err


@dataclass
class CounterfactualResult:
    """Counterfactual draws (``samples``) beside the factual ones they came from."""

    samples: dict
    factual: dict
    evidence: dict
    do: dict

    def mean(self, node):
        return float(self.samples[node].float().mean())

    def __getitem__(self, node):
        return self.samples[node]

    def __str__(self):
        given = ", ".join(f"{k}={_fmt(v)}" for k, v in self.evidence.items())
        action = ", ".join(f"{k}={_fmt(v)}" for k, v in self.do.items())
        lines = [f"counterfactual do({action}) given {given}:"]
        for node in self.samples:
            lines.append(f"  {node}: factual {float(self.factual[node].float().mean()):.4g} "
                         f"-> counterfactual {self.mean(node):.4g}")
        return "\n".join(lines)


def _mechanism_dist(scm, node, values, inputs):
    mechanism = scm.mechanism(node)
    env = {**inputs, **values}
    return mechanism(**{parent: env[parent] for parent in mechanism.parents})


def counterfactual(scm, evidence, do, n=1000, method="importance", steps=1000, **inputs):
    """Draws of every node in the world where ``do`` holds, given factual ``evidence``.

    Parameters
    ----------
    evidence : dict node -> observed value in the factual world (a label for a labelled node)
    do : dict node -> value set by the intervention (likewise)
    n : number of counterfactual draws
    method : "importance" (likelihood weighting) or "svi" (fit a guide over the
        latent ancestors of the evidence, holding the SCM's params fixed) for
        the factual posterior. Neither changes the SCM.
    """
    evidence, do = dict(evidence), dict(do)
    for name in list(evidence) + list(do):
        if name not in scm:
            raise KeyError(f"'{name}' is not a node (nodes: {', '.join(scm.nodes)})")
    if scm.interventions or scm.observed:
        raise ValueError("counterfactual() needs the original SCM, without do/condition surgery")
    # Labels -> codes, checked early (finite numbers), as scm.do checks them.
    actions = {node: check_value(node, value, scm.labels(node), what="do") for node, value in do.items()}
    factual_scm = scm.condition(**evidence) if evidence else scm
    weights = {}
    if method == "importance":
        with torch.no_grad():
            if evidence:
                factual, _ = _resample(factual_scm, n, max(20 * n, 20000), inputs)
            else:
                factual, weights = scm.model.simulate(n, **inputs)
        weights.update({site: value for site, value in factual.items() if site not in scm})
        factual = nodes_only(scm, factual)
    elif method == "svi":
        if scm.model.global_sites:
            raise ValueError(
                f"counterfactual(method='svi') cannot use the Bayesian mechanisms of node(s) "
                f"{', '.join(map(repr, scm.model.global_sites))}; use method='importance'"
            )
        # SVI needs gradients: fit outside no_grad (FitResult.sample is no_grad itself).
        # learn_params=False: the guide learns the factual posterior under the SCM as it is.
        factual = factual_scm.fit(steps=steps, progress=False, learn_params=False, **inputs).sample(n)
    else:
        raise ValueError(f"method must be 'importance' or 'svi', got {method!r}")
    with torch.no_grad(), param_scope(store=scm.params):
        # Bayesian mechanisms: each row keeps the weights its factual world was drawn with.
        scm.model.prepare_with(weights)
        noise = {node: abduct(node, _mechanism_dist(scm, node, factual, inputs), factual[node])
                 for node in scm.nodes}
        world = {}
        for node in scm.nodes:
            if node in do:
                code = torch.as_tensor(actions[node], dtype=factual[node].dtype)
                world[node] = code.expand_as(factual[node])
            else:
                world[node] = predict(node, _mechanism_dist(scm, node, world, inputs), noise[node])
    return CounterfactualResult(world, factual, evidence, do)
