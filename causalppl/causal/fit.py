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
import math
import warnings
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
    converged: bool | None = None  # see check_convergence
    moving: list = field(default_factory=list)  # nodes whose params still moved at the end

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
        figure, _ = loss_figure(self.losses, f"SVI on {', '.join(self.scm.nodes)}", plt)
        figure.savefig(path)
        plt.close(figure)
        return path


def loss_scale(losses):
    """The y-axis scale for a loss curve: ``"log"`` for a positive loss spanning more than two
    decades, ``"symlog"`` for one that changes sign (or touches 0) across such a span, else ``"linear"``.

    >>> loss_scale([5000.0, 300.0, 12.0]), loss_scale([5000.0, -3.0, -2.0]), loss_scale([3.0, 2.0])
    ('log', 'symlog', 'linear')
    """
    finite = [abs(x) for x in losses if math.isfinite(x)]
    if not finite:
        return "linear"
    if all(x > 0 for x in losses if math.isfinite(x)):
        return "log" if max(finite) > 100 * min(finite) else "linear"
    small = sorted(finite)[len(finite) // 2]  # a typical size: the median magnitude
    return "symlog" if max(finite) > 100 * max(small, 1e-12) else "linear"


def loss_figure(losses, title, plt):
    """A matplotlib (figure, axis) of the loss curve, on the scale :func:`loss_scale` picks."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(losses)
    scale = loss_scale(losses)
    if scale == "symlog":
        finite = sorted(abs(x) for x in losses if math.isfinite(x))
        axis.set_yscale("symlog", linthresh=max(finite[len(finite) // 2], 1e-12))
    else:
        axis.set_yscale(scale)
    axis.set_xlabel("step")
    axis.set_ylabel("loss (negative ELBO)" + (f", {scale} scale" if scale != "linear" else ""))
    axis.set_title(title)
    figure.tight_layout()
    return figure, axis


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
        posterior_draws_kept=1000, tol=1e-3, **inputs):
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
    tol : float
        Convergence tolerance on the relative change of the smoothed loss
        over the last tenth of the steps; above it, a :class:`ConvergenceWarning`
        names the nodes whose params still move (``result.converged``, ``result.moving``).
    **inputs : values of the SCM's inputs.

    Returns
    -------
    FitResult
    """
    options = dict(locals())  # the call as made, for refits (bootstrap); see _record_fit
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
        watch = ConvergenceWatch((scm.params, result.guide_params), steps)
        for step in _progress(range(steps), progress):
            watch.before_step(step)
            result.losses.append(svi.step())
        if learn_params:
            _keep_weight_posterior(result, posterior_draws_kept)
    watch.check(result, tol)
    if learn_params:
        _record_fit(scm, data, options)
    return result


def _record_fit(scm, data, options):
    """Keep on the SCM what repeating this fit needs (the bootstrap refits it on resampled data).

    ``options`` are :func:`fit`'s arguments as called; ``data`` the tensors it fitted.
    """
    kept = {name: value for name, value in options.items() if name not in ("scm", "data", "seed", "progress")}
    scm._state.fit = {"data": data, "options": kept}


class ConvergenceWarning(UserWarning):
    """An SVI fit whose smoothed loss still changed at the end of its steps."""


class ConvergenceWatch:
    """Convergence of an SVI run: the loss over its last two windows and the params over the last.

    The window is a tenth of the steps. Call :meth:`before_step` before each
    step (it copies the params when the last window starts) and
    :meth:`check` after the run.
    """

    def __init__(self, stores, steps):
        self.stores = stores
        self.steps = steps
        self.window = max(1, steps // 10)
        self.before = None

    def before_step(self, step):
        if step == self.steps - self.window:
            self.before = _snapshot(self.stores)

    def check(self, result, tol):
        """Set ``result.converged`` / ``result.moving``; warn with :class:`ConvergenceWarning` if not converged."""
        change = loss_change(result.losses, self.window)
        result.converged = change is not None and not change.moving(tol)
        if result.converged or not result.losses:
            return
        result.moving = moving_nodes(self.before or {}, _snapshot(self.stores), result.scm.nodes, tol)
        named = ", ".join(f"{node} ({', '.join(names)})" if node in result.scm else f"param {node}"
                          for node, names in result.moving) or "none found"
        result.moving = [node for node, _ in result.moving]
        how = (f"the smoothed loss changed by {change.relative:.2g} (relative) over the last "
               f"{self.window} steps, above tol={tol:g}" if change is not None else "too few steps to tell")
        warnings.warn(
            f"SVI has not converged after {len(result.losses)} steps: {how}; params still moving at "
            f"node(s): {named}. Run more steps or raise lr (or loosen tol=).",
            ConvergenceWarning, stacklevel=4,
        )


@dataclass
class LossChange:
    """The change of the mean loss between the last two windows, its relative size and its noise."""

    delta: float
    relative: float
    noise: float  # the standard error of ``delta`` from the step-to-step scatter

    def moving(self, tol):
        """True when the change is above ``tol`` relative to the loss and above three standard errors."""
        return self.relative > tol and abs(self.delta) > 3 * self.noise


def loss_change(losses, window):
    """:class:`LossChange` of the mean loss from the window before the last to the last; ``None``
    when there are fewer than two windows of losses.

    >>> change = loss_change([10.0, 8.0, 6.0, 5.0], 2)
    >>> change.delta, round(change.relative, 3), change.moving(1e-3)
    (-3.5, 0.389, True)
    """
    if window < 1 or len(losses) < 2 * window:
        return None
    last = torch.tensor(losses[-window:], dtype=torch.double)
    previous = torch.tensor(losses[-2 * window:-window], dtype=torch.double)
    delta = float(last.mean() - previous.mean())
    scale = max(abs(float(last.mean())), abs(float(previous.mean())), 1e-12)
    # Step-to-step differences measure the noise of a stochastic ELBO without the trend.
    steps = torch.diff(torch.cat([previous, last]))
    sigma = float(steps.std()) / math.sqrt(2) if len(steps) > 1 else 0.0
    return LossChange(delta, abs(delta) / scale, sigma * math.sqrt(2 / window))


def _snapshot(stores):
    return {name: value.detach().clone() for store in stores for name, value in store.items()}


def moving_nodes(before, after, nodes, tol):
    """Nodes whose params changed by more than ``tol`` from ``before`` to ``after``, largest first.

    A param's change is ``|new - old| / max(|new|, 1)`` (relative for large
    params, absolute for small ones); params group by node from their names
    (``y.weight`` -> ``y``; a guide's ``AutoNormal.locs.z`` -> ``z``). Returns
    ``[(node, [param names]), ...]``; a param no node claims is its own entry.

    >>> old, new = {"y.weight": torch.tensor([1.0]), "x.bias": torch.tensor(0.0)}, {}
    >>> new = {"y.weight": torch.tensor([1.5]), "x.bias": torch.tensor(1e-5)}
    >>> moving_nodes(old, new, ("x", "y"), 1e-3)
    [('y', ['y.weight'])]
    """
    changes = {}
    for name, old in before.items():
        new = after.get(name)
        if new is None or new.shape != old.shape:
            continue
        change = float((new - old).double().norm()) / max(float(new.double().norm()), 1.0)
        if change > tol:
            node = _node_of(name, nodes)
            largest, names = changes.get(node, (0.0, []))
            changes[node] = (max(largest, change), names + [name])
    ranked = sorted(changes.items(), key=lambda item: -item[1][0])
    return [(node, names) for node, (_, names) in ranked]


def _node_of(name, nodes):
    parts = name.split(".")
    if parts[0] in nodes:
        return parts[0]
    if parts[-1] in nodes:
        return parts[-1]
    return name


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
