"""Fitting an SCM to data by SVI, with a graph-aware guide.

Only the latent *ancestors* of observed nodes get a variational guide; every
other latent node is drawn from its own mechanism given its parents, which
is its exact posterior (nothing observed depends on it) and costs nothing to
learn. Params inside mechanisms (``cp.param``) are learned alongside.

>>> import torch, causalppl as cp
>>> cp.set_rng_seed(0); cp.clear_param_store()
>>> scm = cp.graphs.load("confounded").condition(x=1.0)
>>> result = scm.fit(steps=1500, lr=0.02, progress=False)
>>> draws = result.sample(4000)
>>> abs(draws["z"].mean().item() - 0.5) < 0.1
True
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import networkx as nx
import torch

from causalppl import optim as optim_module
from causalppl.graph.lower import table_to_tensors
from causalppl.handlers import block, param_scope, replay, trace
from causalppl.infer import SVI, Trace_ELBO
from causalppl.params import ParamStore, set_rng_seed
from causalppl.runtime import plate

GUIDES = ("normal", "mvn", "delta")


def guided_nodes(scm, observed):
    """Latent nodes that are ancestors of an observed node (the ones a guide must cover)."""
    graph = scm.graph
    ancestors = set()
    for node in observed:
        ancestors |= nx.ancestors(graph, node)
    hidden = set(scm.interventions) | set(observed)
    return [node for node in scm.nodes if node in ancestors and node not in hidden]


def _make_guide(kind, model):
    from causalppl.infer import autoguide

    classes = {"normal": autoguide.AutoNormal, "mvn": autoguide.AutoMultivariateNormal,
               "delta": autoguide.AutoDelta}
    if kind not in classes:
        raise ValueError(f"guide must be one of {', '.join(GUIDES)} or a callable guide, got {kind!r}")
    # With minibatches the guide draws the rows and the model's plate replays them.
    return classes[kind](model)


@dataclass
class FitResult:
    """What :func:`fit` learned: ``losses``, the ``guide``, and posterior sampling."""

    scm: object
    model: object
    guide: object
    losses: list = field(default_factory=list)
    device: object = None
    guide_params: ParamStore = field(default_factory=ParamStore)

    @property
    def params(self):
        """This fit's parameters (constrained, detached): the SCM's mechanism params and the guide's."""
        stores = (self.scm.params, self.guide_params)
        return {name: value.detach() for store in stores for name, value in store.items()}

    def _device(self):
        return torch.device(self.device) if self.device is not None else contextlib.nullcontext()

    def sample(self, n=1000):
        """``n`` posterior draws of every node: dict node -> tensor with leading dim ``n``."""
        with self._device(), torch.no_grad(), param_scope(store=self.guide_params):
            # detached: a Delta guide hands back its params themselves
            return {node: value.detach() for node, value in posterior_draws(self.model, self.guide, n).items()}

    def median(self):
        """The guide's posterior median of each guided site (when the guide has one)."""
        with self._device(), torch.no_grad(), param_scope(store=self.guide_params):
            return self.guide.median()

    def summary(self, n=2000):
        """Posterior mean and standard deviation of every node."""
        draws = self.sample(n)
        return {node: (float(v.float().mean()), float(v.float().std())) for node, v in draws.items()}

    def plot_losses(self, path):
        """Save the loss curve to ``path`` (needs matplotlib: ``pip install causalppl[plot]``)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise ImportError("plot_losses needs matplotlib: pip install 'causalppl[plot]'") from err
        figure, axis = plt.subplots(figsize=(6, 3.5))
        axis.plot(self.losses)
        axis.set_xlabel("step")
        axis.set_ylabel("loss (negative ELBO)")
        axis.set_title(f"SVI on {', '.join(self.scm.nodes)}")
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)
        return path


def posterior_draws(model, guide, n, sites=()):
    """Run guide then model (replaying the guide) ``n`` times in one vectorised plate.

    Every row is drawn, also after a minibatch fit. Returns node -> draws,
    plus the guide's draws of the sample ``sites`` named.
    """
    if model.subsample_size is not None:
        model, guide = model.all_rows(), _all_rows(guide)
    guide_trace = trace(guide).get_trace()
    nesting = max((len(s["cond_indep_stack"]) for s in guide_trace.nodes.values()
                   if s["type"] == "sample"), default=0)
    nesting = max(nesting, 1 if model.data is not None else 0)
    with plate("_posterior_draws", n, dim=-(nesting + 1)):
        guide_trace = trace(guide).get_trace()
        values = replay(model, trace=guide_trace)()
    # Observed nodes come back as their data; give them the leading draws dim too.
    values = {node: value if node not in model.observed else value.expand((n,) + value.shape)
              for node, value in values.items()}
    for site in sites:
        values[site] = guide_trace.nodes[site]["value"].reshape((n,) + _site_shape(guide_trace.nodes[site]))
    return values


def _site_shape(site):
    return tuple(site["fn"].event_shape)


def _all_rows(guide):
    """An autoguide that draws every row of the plates it subsampled during the fit."""
    subsampled = [f for f in getattr(guide, "_frames", {}).values() if f.subsample_size < f.size]
    if not subsampled:
        return guide
    full = copy.copy(guide)
    full.create_plates = lambda *args, **kwargs: [plate(f.name, f.size) for f in subsampled]
    return full


class _DataModel:
    """``scm.model`` bound to data, inputs and minibatch size: a zero-argument model."""

    def __init__(self, scm, data, subsample_size, inputs):
        self.scm = scm
        self.lowered = scm.model
        self.data = data
        self.subsample_size = subsample_size
        self.inputs = inputs
        self.observed = set(scm.observed) | set(data or ())

    def __call__(self):
        return self.lowered(data=self.data, subsample_size=self.subsample_size, **self.inputs)

    def all_rows(self):
        """The same model without minibatches."""
        return _DataModel(self.scm, self.data, None, self.inputs)


def fit(scm, data=None, guide="normal", steps=1000, optim=None, lr=0.01, subsample_size=None,
        num_particles=1, device=None, progress=True, seed=None, learn_params=True,
        posterior_draws_kept=1000, **inputs):
    """Fit ``scm`` (conditioned on its observed nodes and on ``data``) by SVI.

    Parameters
    ----------
    data : dict of tensors or pandas.DataFrame, optional
        Columns are observed nodes, rows are i.i.d. (in a plate).
    guide : "normal" | "mvn" | "delta" | callable
        Automatic guide over the latent ancestors of observed nodes, or your own.
    steps, lr, optim : SVI steps and optimiser (default: ClippedAdam from ``lr`` decaying to
        ``lr / 10`` over the run).
    subsample_size : int, optional
        Mini-batch rows per step (plate subsampling, rescaled to the full data).
    device : str or torch.device, optional
        Runs everything (params, data, sampling) on this device, e.g. ``"cuda"``.
    progress : bool
        Show a tqdm progress bar when tqdm is installed.
    learn_params : bool
        ``False`` holds the SCM's params fixed and fits only the guide (a
        posterior under the model as it is): the SCM is left unchanged.
    posterior_draws_kept : int
        After a fit with Bayesian mechanisms, this many draws of their weights
        from the fitted guide are kept on the SCM; queries integrate over them.
    **inputs : values of the SCM's inputs.

    Returns
    -------
    FitResult
    """
    if seed is not None:
        set_rng_seed(seed)
    device_context = torch.device(device) if device is not None else contextlib.nullcontext()
    with device_context:
        if data is not None:
            data = {name: value.to(device) if device is not None else value
                    for name, value in table_to_tensors(data, labels=scm.model.labels).items()}
        inputs = {name: torch.as_tensor(value, device=device) if device is not None else value
                  for name, value in inputs.items()}
        if device is not None:
            scm = scm.to(device)
        model = _DataModel(scm, data, subsample_size, inputs)
        if not model.observed:
            raise ValueError("nothing to fit: give data or condition the SCM on observed values first")
        # Latent nodes that nothing observed depends on keep their own mechanism
        # as their (exact) posterior: hidden from the ELBO, never guided.
        guided = set(guided_nodes(scm, model.observed))
        free = [node for node in scm.nodes
                if node not in guided and node not in model.observed and node not in scm.interventions]
        svi_model = block(model, hide=free) if free else model
        if isinstance(guide, str):
            guide = _make_guide(guide, svi_model)
        elif not callable(guide):
            raise TypeError(f"guide must be one of {', '.join(GUIDES)} or a callable, got {guide!r}")
        if optim is None:
            # Adam whose step size decays to a tenth over the run: fast early
            # progress, then small steps that settle on the optimum. No clipping:
            # minibatch gradients are scaled up by rows/batch, and clipping them
            # would bias the optimum.
            optim = optim_module.ClippedAdam(
                {"lr": lr, "lrd": 0.1 ** (1 / max(steps, 1)), "clip_norm": float("inf")})
        elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1)
        result = FitResult(scm, model, guide, device=device)
        # The mechanisms' params live in the SCM's own store (the lowered model
        # reads it); the guide's params belong to this fit.
        scoped_guide = param_scope(guide, store=result.guide_params)
        if not learn_params:
            optim = _GuideParamsOnly(optim, result.guide_params)
        svi = SVI(svi_model, scoped_guide, optim, elbo)
        for _ in _progress(range(steps), progress):
            result.losses.append(svi.step())
        if learn_params:
            _keep_weight_posterior(result, posterior_draws_kept)
    return result


class _GuideParamsOnly:
    """An optimiser that steps only the params of one store (the guide's)."""

    def __init__(self, optim, store):
        self.optim = optim
        self.store = store

    def __call__(self, params):
        mine = {id(leaf) for _, leaf in self.store.named_parameters()}
        self.optim([p for p in params if id(p) in mine])


def _keep_weight_posterior(result, draws):
    """Store draws of the Bayesian weights from the fitted guide on the SCM, for queries."""
    sites = [site for names in result.scm.model.global_sites.values() for site in names]
    if not sites:
        return
    with result._device(), torch.no_grad(), param_scope(store=result.guide_params):
        values = posterior_draws(result.model, result.guide, draws, sites=sites)
    result.scm._state.posterior = {site: values[site].detach() for site in sites}


def _progress(iterable, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc="SVI", unit="step", leave=False)
