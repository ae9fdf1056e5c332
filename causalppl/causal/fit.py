"""Fitting an SCM to data: exact maximum likelihood where it exists, SVI for the rest.

Fully observed linear, logistic and table mechanisms are fitted exactly
(:mod:`causalppl.causal.mle`). SVI, with a graph-aware guide, learns what
remains: only the latent *ancestors* of observed nodes get a variational
guide; every other latent node is drawn from its own mechanism given its
parents, which is its exact posterior (nothing observed depends on it) and
costs nothing to learn. Params inside mechanisms (``cp.param``) are learned
alongside.

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
import operator
import warnings
from dataclasses import dataclass, field

import networkx as nx
import torch

from causalppl import optim as optim_module
from causalppl.causal import report
from causalppl.causal.checkpoint import Checkpoints
from causalppl.causal.compiled_svi import COMPILE_OPTIONS, Reference, compiled_step
from causalppl.causal.distributed import Parallel
from causalppl.causal.learnable import KINDS as LEARNABLE_KINDS
from causalppl.causal.learnable import CategoricalTable
from causalppl.causal.mle import fit_mle, why_not_exact
from causalppl.handlers import block, param_scope, replay, trace
from causalppl.infer import SVI, JitTrace_ELBO, Trace_ELBO
from causalppl.params import ParamStore, set_rng_seed
from causalppl.runtime import plate

GUIDES = ("normal", "mvn", "delta")
METHODS = ("auto", "mle", "svi")
LEARNABLE = tuple(LEARNABLE_KINDS.values())


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
    """What :func:`fit` learned: ``losses``, the ``guide``, and posterior sampling.

    ``method`` says how: ``"mle"`` (exact maximum likelihood only),
    ``"svi"``, or ``"mle+svi"``; ``estimates`` holds the exact fits
    (node -> :class:`causalppl.causal.mle.Estimate`, with standard errors);
    ``notes`` what a reader should know (empty table rows, separation).
    ``engine`` says how the SVI steps ran: ``"compiled"`` (the batched graph of
    :mod:`causalppl.graph.compiled`), ``"compiled+torch.compile"``,
    ``"reference"`` (the lowered model through the handler stack), or
    ``"reference+JitTrace_ELBO"`` (that loss captured and compiled, with
    ``compile=True``), with the reason in ``engine_note``; ``None`` without SVI.
    """

    scm: object
    model: object
    guide: object
    losses: list = field(default_factory=list)
    device: object = None
    guide_params: ParamStore = field(default_factory=ParamStore)
    converged: bool | None = None  # see check_convergence
    moving: list = field(default_factory=list)  # nodes whose params still moved at the end
    method: str = "svi"
    estimates: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    engine: str | None = None  # how SVI stepped: "compiled", "compiled+torch.compile", "reference", ...
    engine_note: str | None = None  # why the reference path ran, when it did

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

    def node_summary(self, n=2000):
        """Posterior mean and standard deviation of every node: node -> (mean, sd), from ``n`` draws."""
        draws = self.sample(n)
        return {node: (float(v.float().mean()), float(v.float().std())) for node, v in draws.items()}

    def summary(self):
        """The learned coefficients in the data's units, one row per number.

        Columns ``node, parameter, parent, estimate, sd``: ``sd`` is the
        maximum-likelihood standard error, or the posterior sd of a Bayesian
        mechanism, NaN when unknown (a point fit by SVI). A pandas DataFrame
        when pandas is importable, else a list of :class:`causalppl.causal.report.Row`.
        """
        return report.summary_table(self)

    def to_dict(self):
        """The fit as JSON-ready data: method, losses, convergence and the learned params."""
        from causalppl.tables import plain

        return plain({"method": self.method, "losses": list(self.losses), "converged": self.converged,
                      "moving": list(self.moving), "params": self.params, "notes": list(self.notes)})

    def to_frame(self):
        """The summary table (:meth:`summary`) as a pandas DataFrame."""
        from causalppl.tables import pandas

        table = self.summary()
        return table if hasattr(table, "columns") else pandas().DataFrame([vars(row) for row in table])

    def __str__(self):
        return report.describe(self)

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
        posterior_draws_kept=1000, method="auto", alpha=0.0, tol=1e-3, distributed=False,
        checkpoint=None, checkpoint_every=None, resume=None, compile=None, **inputs):
    """Fit ``scm`` (conditioned on its observed nodes and on ``data``).

    Parameters
    ----------
    data : dict of tensors or pandas.DataFrame, optional
        Columns are observed nodes, rows are i.i.d. (in a plate).
    method : "auto" | "mle" | "svi" | "nuts"
        ``"mle"``: exact maximum likelihood for every learnable mechanism
        (each must be fully observed and not Bayesian); no SVI, ``steps`` is
        ignored and ``losses`` is ``[final negative log-likelihood]``.
        ``"svi"``: SVI for everything. ``"auto"`` (default): maximum
        likelihood for the fully observed point mechanisms, held there while
        SVI learns what remains (latent nodes, Bayesian mechanisms, MLPs,
        hand-written params); no SVI at all when nothing remains.
        ``"nuts"``: the posterior of the latent sites (Bayesian weights) by
        NUTS, with ``num_samples``, ``warmup_steps``, ``num_chains`` (see
        :mod:`causalppl.causal.mcmc_fit`).
    alpha : float
        Pseudo-count for categorical tables fitted exactly (0 = maximum likelihood).
    guide : "normal" | "mvn" | "delta" | callable
        Automatic guide over the latent ancestors of observed nodes, or your own.
    steps, lr, optim : SVI steps and optimiser (default: ClippedAdam from ``lr`` decaying to
        ``lr / 10`` over the run).
    subsample_size : int, optional
        Mini-batch rows per SVI step (plate subsampling, rescaled to the full data).
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
    distributed : bool
        Data-parallel over the ranks of ``torchrun`` (one rank outside it; see
        :mod:`causalppl.causal.distributed`): each rank fits its shard of the
        rows (seeded by ``seed``), ``subsample_size`` rows per rank and step;
        exact fits sum their statistics over the ranks, SVI sums the
        gradients. Every rank returns the same fitted params; write files
        from rank 0 only.
    checkpoint, checkpoint_every : path and int, optional
        Every ``checkpoint_every`` SVI steps (and at the end) write the fitted
        SCM to ``checkpoint`` atomically, in ``scm.save``'s format, with what
        resuming needs (optimiser state, step, losses, random streams).
    resume : path, optional
        Continue the SVI run saved in this checkpoint (same data, options and
        number of ranks): the result equals that of an uninterrupted run.
    compile : None | bool
        ``None`` (default): SVI steps run on the compiled graph
        (:mod:`causalppl.graph.compiled`: linear nodes in one matmul, tables in
        one gather, the autoguide drawn at once, one flat leaf of params)
        wherever it applies and agrees with the reference, else on the
        reference path (``result.engine`` and ``result.engine_note`` say which
        and why). ``False``: always the reference path. ``True``: the compiled
        graph, also wrapped in ``torch.compile`` (with CUDA graphs on a GPU);
        where the graph does not apply, the reference path's loss captured
        and compiled by :class:`~causalppl.infer.JitTrace_ELBO`
        (``engine="reference+JitTrace_ELBO"``); a warning says which, and
        when neither is possible.
    **inputs : values of the SCM's inputs.

    Before fitting, a learnable mechanism that has no params in ``scm.params``
    yet and no standardisation is standardised by the mean and sd of its
    (non-binary) data columns, so that raw columns fit well.

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError before anything runs for an option out of range (see
    :func:`check_options`) or a data column that is not a node (or holds
    NaN, ...), naming it; with ``method="mle"``, naming each node that
    cannot be fitted exactly and why.
    """
    options = dict(locals())  # the call as made, for refits (bootstrap); see _record_fit
    if method == "nuts":  # MCMC instead of SVI: causalppl.causal.mcmc_fit
        from causalppl.causal.mcmc_fit import fit_nuts

        return fit_nuts(options)
    check_options(method=method, steps=steps, lr=lr, num_particles=num_particles,
                  subsample_size=subsample_size, posterior_draws_kept=posterior_draws_kept, alpha=alpha, tol=tol,
                  compile=compile)
    parallel = Parallel.start(distributed)
    if distributed:
        seed = parallel.seed_from_main(seed)  # rows are shared out by it; each rank draws on its own stream
        set_rng_seed(seed + parallel.rank)
    elif seed is not None:
        set_rng_seed(seed)
    checkpoints = Checkpoints(checkpoint, checkpoint_every, resume, parallel)
    device_context = torch.device(device) if device is not None else contextlib.nullcontext()
    with device_context:
        scm, data, inputs, model, free = data_model(scm, data, inputs, device, subsample_size,
                                                    shard=lambda rows: parallel.shard(rows, seed)[0])
        svi_model = block(model, hide=free) if free else model
        if learn_params:
            standardize_from_data(scm, data, parallel.column_stats if distributed else None)
        estimates = _exact_estimates(scm, _known_values(scm, data, inputs), method, learn_params, alpha,
                                     parallel.total)
        left = _left_for_svi(scm, svi_model, estimates, free) if method != "svi" else ["everything"]
        if method == "mle" and left:
            raise ValueError(
                f"method='mle' fits learnable mechanisms only, but these need SVI: {', '.join(left)}; "
                "use method='auto' or 'svi'"
            )
        result = FitResult(scm, model, _NoGuide(), device=device, estimates=estimates,
                           notes=[note for e in estimates.values() for note in e.notes])
        if left:
            result.method = "mle+svi" if estimates else "svi"
            fitted = [f"{node}.{suffix}" for node, e in estimates.items() for suffix in e.params]
            if steps == 0 and not resume:
                warnings.warn(f"fit(steps=0) takes no SVI steps: {', '.join(left)} keep their initial (or "
                              "warm-start) values; give steps >= 1 to fit them", UserWarning, stacklevel=3)
            _run_svi(result, svi_model, guide, optim, lr, steps, num_particles, learn_params, progress,
                     fitted, tol, parallel, checkpoints, engine=(compile, model, free))
            if learn_params:
                _keep_weight_posterior(result, posterior_draws_kept)
                parallel.broadcast_posterior(scm._state)
        else:
            result.method = "mle"
            result.losses = [sum(e.nll for e in estimates.values())]
            checkpoints.finish(result)
    if learn_params:
        _record_fit(scm, data, options)
    return result


def _whole(name, value, low, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"fit: {name} must be a whole number >= {low}, got {value!r}")


def _number(name, value, positive):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"fit: {name} must be a finite number {bound}, got {value!r}")


def data_model(scm, data, inputs, device, subsample_size=None, shard=None):
    """What a fit runs on: ``(scm, data, inputs, model, free)``.

    ``data`` is checked (and sharded by ``shard(data)`` when given), data,
    inputs and the SCM are moved to ``device``, ``model`` feeds the data in,
    and ``free`` lists the latent nodes that nothing observed depends on: they
    keep their own mechanism as their (exact) posterior, never guided.
    """
    if data is not None:
        data = {name: value.to(device) if device is not None else value
                for name, value in scm.model.check_data(data).items()}
        if shard is not None:
            data = shard(data)
    inputs = {name: torch.as_tensor(value, device=device) if device is not None else value
              for name, value in inputs.items()}
    if device is not None:
        scm = scm.to(device)
    model = _DataModel(scm, data, subsample_size, inputs)
    if not model.observed:
        raise ValueError("nothing to fit: give data or condition the SCM on observed values first")
    guided = set(guided_nodes(scm, model.observed))
    free = [node for node in scm.nodes
            if node not in guided and node not in model.observed and node not in scm.interventions]
    return scm, data, inputs, model, free


def check_options(method="auto", steps=1000, lr=0.01, num_particles=1, subsample_size=None,
                  posterior_draws_kept=1000, alpha=0.0, tol=1e-3, compile=None):
    """Refuse :func:`fit` options out of range before anything runs, naming the option.

    >>> check_options(steps=-5)
    Traceback (most recent call last):
    ...
    ValueError: fit: steps must be a whole number >= 0, got -5
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    _whole("steps", _as_int(steps), 0)
    _number("lr", lr, positive=True)
    _whole("num_particles", _as_int(num_particles), 1)
    _whole("subsample_size", _as_int(subsample_size), 1, allow_none=True)
    _whole("posterior_draws_kept", _as_int(posterior_draws_kept), 1)
    _number("alpha", alpha, positive=False)
    _number("tol", tol, positive=False)
    if not any(compile is option for option in COMPILE_OPTIONS):
        raise ValueError(f"fit: compile must be None, True or False, got {compile!r}")


def _as_int(value):
    """NumPy and 0-d torch integers count as whole numbers; anything else is left to be refused."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.dtype == torch.bool):
        return value
    try:
        return operator.index(value)
    except TypeError:
        return value


def _run_svi(result, svi_model, guide, optim, lr, steps, num_particles, learn_params, progress, fixed,
             tol, parallel=None, checkpoints=None, engine=(False, None, ())):
    """SVI on ``svi_model``; the params named in ``fixed`` (fitted exactly) are not stepped.

    ``parallel`` shares each step among ranks (see :mod:`causalppl.causal.distributed`);
    ``checkpoints`` writes and resumes the run (:class:`causalppl.causal.checkpoint.Checkpoints`);
    ``engine`` is ``(compile, data-bound model, hidden nodes)``: see :func:`fit`'s ``compile``.
    """
    parallel = parallel or Parallel()
    if isinstance(guide, str):
        guide = _make_guide(guide, svi_model)
    elif not callable(guide):
        raise TypeError(f"guide must be one of {', '.join(GUIDES)} or a callable, got {guide!r}")
    result.guide = guide
    if optim is None:
        # Adam whose step size decays to a tenth over the run: fast early
        # progress, then small steps that settle on the optimum. No clipping:
        # minibatch gradients are scaled up by rows/batch, and clipping them
        # would bias the optimum.
        optim = optim_module.ClippedAdam(
            {"lr": lr, "lrd": 0.1 ** (1 / max(steps, 1)), "clip_norm": float("inf")})
    elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1)
    # The mechanisms' params live in the SCM's own store (the lowered model
    # reads it); the guide's params belong to this fit.
    scoped_guide = param_scope(guide, store=result.guide_params)
    if not learn_params:
        optim = _GuideParamsOnly(optim, result.guide_params)
    elif fixed:
        optim = _AllBut(optim, result.scm.params, fixed)
    stores = (result.scm.params, result.guide_params)
    svi = SVI(svi_model, scoped_guide, optim, elbo)
    local = parallel.prepare_svi(svi, stores, guide)
    svi = SVI(*parallel.wrap_svi(svi_model, scoped_guide, optim, stores, local), elbo)
    start = checkpoints.resume_svi(result, svi) if checkpoints else 0
    runner = _stepper(result, svi, guide, optim, fixed, learn_params, parallel, checkpoints, engine,
                      steps > start)
    watch = ConvergenceWatch(stores, steps)
    try:
        for step in _progress(range(start, steps), progress):
            watch.before_step(step)
            result.losses.append(parallel.loss(runner.step()))
            if checkpoints:
                checkpoints.after_step(step + 1, steps, result, svi)
    finally:
        if runner is not svi:
            runner.close()
            result.engine = runner.engine  # torch.compile may have given up at the first step
    watch.check(result, tol)


def _stepper(result, svi, guide, optim, fixed, learn_params, parallel, checkpoints, engine, steps_left):
    """What takes the SVI steps: the compiled step where it applies (see :mod:`causal.compiled_svi`), else ``svi``."""
    compile, model, hidden = engine
    result.engine = "reference"
    blocked = ("compile=False" if compile is False else "distributed" if parallel.size > 1
               else "checkpoints" if checkpoints else "no steps" if not steps_left else None)
    why = blocked
    if blocked is None:
        try:
            runner = compiled_step(svi, model, result.guide, optim, (result.scm.params, result.guide_params),
                                   set(fixed) if learn_params else None, hidden, torch_compile=compile is True)
        except Reference as err:
            why = str(err)
        except Exception as err:  # noqa: BLE001 - a fault of the compiled path must not stop the fit
            why = f"the compiled step failed to set up ({type(err).__name__}: {err})"
            warnings.warn(f"fit: {why}; the SVI steps run on the reference path", RuntimeWarning, stacklevel=4)
        else:
            result.engine = runner.engine
            return runner
    result.engine_note = why
    if compile is True and blocked is None and type(svi.loss) is Trace_ELBO:
        # The batched graph does not cover this model: capture the reference path's loss and compile that.
        elbo = svi.loss
        svi.loss = JitTrace_ELBO(num_particles=elbo.num_particles, vectorize_particles=elbo.vectorize_particles,
                                 max_plate_nesting=elbo.max_plate_nesting, jit_options={"compile": True})
        svi.loss_and_grads = svi.loss.loss_and_grads
        result.engine = "reference+JitTrace_ELBO"
        warnings.warn(f"fit(compile=True): the SVI steps run on the reference path ({why}); its loss is "
                      "captured and compiled by JitTrace_ELBO", RuntimeWarning, stacklevel=4)
    elif compile is True:
        warnings.warn(f"fit(compile=True): the SVI steps run on the reference path ({why}), not compiled",
                      RuntimeWarning, stacklevel=4)
    return svi


# ---------------------------------------------------------------------------
# What is fitted exactly, and what is left for SVI
# ---------------------------------------------------------------------------


def standardize_from_data(scm, data, column_stats=None):
    """Standardise each learnable mechanism without params or standardisation by its data columns.

    A column's centre and scale are its mean and sd; binary {0, 1} columns
    (and categorical parents, which enter as indicators) stay as they are.
    ``column_stats(column) -> (mean, sd) or None (binary)`` computes them
    (default: from ``column`` alone; a distributed fit's from every rank's rows).

    >>> import torch, causalppl as cp
    >>> scm = cp.SCM.from_graph([("x", "y")])
    >>> standardize_from_data(scm, {"x": torch.tensor([1.0, 3.0]), "y": torch.tensor([0.0, 1.0])})
    >>> scm.mechanism("y").fn.standardization
    {'x': (2.0, 1.4142135623730951)}
    """
    if not data:
        return
    for node in scm.nodes:
        mechanism = scm.mechanism(node).fn
        if (not isinstance(mechanism, LEARNABLE) or isinstance(mechanism, CategoricalTable)
                or mechanism.standardization or _has_params(scm.params, node)):
            continue
        stats = {name: (column_stats or _column_stats)(data[name]) for name in (node, *mechanism.parents)
                 if name in data}
        mechanism.set_standardization({name: value for name, value in stats.items() if value is not None})


def _has_params(store, node):
    prefix = f"{node}."
    return any(name.startswith(prefix) for name in store.keys())


def _column_stats(column):
    return None if _is_binary(column) else _centre_and_scale(column)


def _is_binary(column):
    return bool(((column == 0) | (column == 1)).all())


def _centre_and_scale(column):
    column = column.double()
    spread = float(column.std()) if column.numel() > 1 else 1.0
    return float(column.mean()), spread if spread > 0 else 1.0


def _known_values(scm, data, inputs):
    """Every value known row by row: data columns, observed and intervened values, inputs."""
    known = {**inputs, **scm.interventions, **scm.observed, **(data or {})}
    known = {name: torch.as_tensor(value) for name, value in known.items()}
    rows = max((value.numel() for value in known.values()), default=1)
    return {name: value.reshape(-1).expand(rows) if value.numel() == 1 else value.reshape(-1)
            for name, value in known.items() if value.numel() in (1, rows)}


def _exact_estimates(scm, known, method, learn_params, alpha, total=None):
    """Fit the fully observed point mechanisms exactly (all learnable ones for "mle")."""
    if method == "svi" or (method == "auto" and not learn_params):
        return {}
    if not learn_params:
        raise ValueError("method='mle' learns the SCM's params, but learn_params=False holds them fixed")
    exact, reasons = [], []
    for node in scm.nodes:
        mechanism = scm.mechanism(node).fn
        if node in scm.interventions or not isinstance(mechanism, LEARNABLE):
            continue
        reason = why_not_exact(mechanism, node, set(known))
        if reason is None:
            exact.append(node)
        else:
            reasons.append(f"node '{node}': {reason}")
    if method == "mle" and reasons:
        raise ValueError(
            "method='mle' needs every learnable mechanism fully observed and not Bayesian, but "
            f"{'; '.join(reasons)}. Use method='auto' (exact where possible, SVI for the rest) or 'svi'"
        )
    return fit_mle(scm, known, exact, alpha=alpha, total=total)


def _left_for_svi(scm, svi_model, estimates, free):
    """Sites SVI would still learn: latent sample sites, and params not fitted exactly."""
    if all(node in estimates or node in scm.interventions for node in scm.nodes):
        return []
    fitted = {f"{node}.{suffix}" for node, e in estimates.items() for suffix in e.params}
    # One run of the model tells; its draws must not shift the RNG stream SVI then uses.
    cuda = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        sites = trace(svi_model).get_trace().nodes
    left = []
    for name, site in sites.items():
        if site["type"] == "sample" and not site["is_observed"]:
            left.append(f"latent '{name}'")
        elif site["type"] == "param" and name not in fitted and name.split(".")[0] not in free:
            left.append(f"param '{name}'")
    return left


class _NoGuide:
    """The guide of a fit with nothing latent to guide: it samples nothing."""

    def __call__(self, *args, **kwargs):
        return None

    def median(self):
        return {}


class _AllBut:
    """An optimiser that leaves some params of a store (the ones fitted exactly) as they are."""

    def __init__(self, optim, store, names):
        self.optim = optim
        self.store = store
        self.names = list(names)

    def __call__(self, params):
        fixed = {id(self.store.leaf(name)) for name in self.names if name in self.store}
        self.optim([p for p in params if id(p) not in fixed])


def _record_fit(scm, data, options):
    """Keep on the SCM what repeating this fit needs (the bootstrap refits it on resampled data).

    ``options`` are :func:`fit`'s arguments as called; ``data`` the tensors it fitted.
    """
    # A refit is one process on the data given, writing no checkpoints.
    left_out = ("scm", "data", "seed", "progress", "distributed", "checkpoint", "checkpoint_every", "resume")
    kept = {name: value for name, value in options.items() if name not in left_out}
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
            ConvergenceWarning, stacklevel=5,
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
