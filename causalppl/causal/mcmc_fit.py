"""``scm.fit(method="nuts")``: the posterior of an SCM's Bayesian weights by NUTS instead of SVI.

The lowered model, bound to the data, is the target: NUTS samples every
latent site that something observed depends on (the Bayesian weights, the
global sites of ``bayesian=True`` mechanisms, and any latent ancestor of an
observed node); latent nodes nothing observed depends on are drawn from
their own mechanisms, as in SVI. The draws of the weights are kept on the
SCM exactly where an SVI fit keeps its guide's posterior draws
(``scm._state.posterior``), so ``ate``, ``interventional`` and the other
queries integrate over the NUTS posterior.

Point params (a linear-Gaussian noise ``scale``, say) are not sampled:
fully observed point mechanisms are fitted exactly first; any other point
param is fitted by a short SVI run first (empirical Bayes) and then held
while NUTS runs. ``learn_params=False`` holds every param at its current
value (a noise scale you know, say).

The NUTS options ride in ``fit``'s keywords: ``num_samples`` (500),
``warmup_steps`` (= ``num_samples``), ``num_chains`` (1), ``step_size``,
``target_accept_prob`` (0.8), ``max_tree_depth`` (10), ``full_mass``
(False), ``adapt_step_size``, ``adapt_mass_matrix``, ``jit_compile``
(default: on when every mechanism is an expression, a learnable mechanism
or a fixed distribution, whose control flow never depends on the values;
off for other callables).

>>> import torch, causalppl as cp
>>> from causalppl.causal.learnable import LinearGaussian
>>> cp.set_rng_seed(0)
>>> x = torch.linspace(-1, 1, 20)
>>> scm = cp.SCM().add("x", "Normal(0, 1)").add("y", LinearGaussian("y", ["x"], bayesian=True))
>>> scm.params["y.scale"] = torch.tensor(0.5)
>>> result = scm.fit({"x": x, "y": 2 * x}, method="nuts", num_samples=200, warmup_steps=150,
...                  learn_params=False, progress=False)
>>> result.method, tuple(scm._state.posterior["y.weight"].shape)
('nuts', (200, 1))
>>> abs(scm._state.posterior["y.weight"].mean().item() - 1.9) < 0.2
True
"""

from __future__ import annotations

import contextlib
import math
import warnings

import torch

from causalppl.causal.fit import (
    LEARNABLE,
    ConvergenceWarning,
    FitResult,
    _exact_estimates,
    _known_values,
    _NoGuide,
    _record_fit,
    _run_svi,
    check_options,
    data_model,
    standardize_from_data,
)
from causalppl.distributions import Delta
from causalppl.handlers import block, trace
from causalppl.infer.mcmc import MCMC, NUTS
from causalppl.params import set_rng_seed
from causalppl.runtime import HANDLER_STACK, plate, sample

# fit() keywords that configure NUTS (they arrive among fit's **inputs).
NUTS_OPTIONS = {
    "num_samples": 500, "warmup_steps": None, "num_chains": 1, "step_size": 1.0, "target_accept_prob": 0.8,
    "max_tree_depth": 10, "full_mass": False, "adapt_step_size": True, "adapt_mass_matrix": True,
    "jit_compile": None,
}
R_HAT_ALARM = 1.1


class PosteriorSamples:
    """A guide that hands out MCMC draws: each run takes one draw of every site, the same draw for all
    sites; inside a vectorised plate (``posterior_draws``'s) one draw per entry of the plate.

    ``samples`` maps sites to ``(S, *shape)``; ``batch_dims`` to how many of the
    leading dims of ``shape`` are the site's batch dims (the rest are its event).
    """

    def __init__(self, samples, batch_dims):
        self.samples = {name: value.detach() for name, value in samples.items()}
        self.batch_dims = dict(batch_dims)
        self.num_draws = next(iter(self.samples.values())).shape[0] if self.samples else 0

    def __call__(self, *args, **kwargs):
        if not self.samples:
            return {}
        frame = next((h for h in HANDLER_STACK if isinstance(h, plate) and not h._sequential and h.size > 0
                      and h.name == "_posterior_draws"), None)
        device = next(iter(self.samples.values())).device
        if frame is None:
            index = torch.randint(self.num_draws, (), device=device)
        else:
            index = torch.randint(self.num_draws, (frame.frame.subsample_size,), device=device)
        out = {}
        for name, draws in self.samples.items():
            value = draws[index]
            event_dim = value.dim() - index.dim() - self.batch_dims[name]
            if frame is not None:
                batch = self.batch_dims[name]
                pad = -frame.dim - 1 - batch
                value = value.reshape(value.shape[:1] + (1,) * max(pad, 0) + value.shape[1:])
            out[name] = sample(name, Delta(value, event_dim=event_dim))
        return out

    def median(self):
        """Each site's element-wise posterior median."""
        return {name: draws.median(dim=0).values for name, draws in self.samples.items()}


def _pop_nuts_options(inputs):
    chosen = {name: inputs.pop(name, default) for name, default in NUTS_OPTIONS.items()}
    if chosen["warmup_steps"] is None:
        chosen["warmup_steps"] = chosen["num_samples"]
    for name in ("num_samples", "num_chains", "max_tree_depth"):
        value = chosen[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"fit(method='nuts'): {name} must be a whole number >= 1, got {value!r}")
    value = chosen["warmup_steps"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"fit(method='nuts'): warmup_steps must be a whole number >= 0, got {value!r}")
    return chosen


def _refuse(options):
    refused = {"subsample_size": None, "distributed": False, "checkpoint": None, "checkpoint_every": None,
               "resume": None}
    for name, default in refused.items():
        if options.get(name) not in (default,):
            raise ValueError(f"fit(method='nuts') does not take {name}={options[name]!r}: NUTS runs on all the "
                             "rows in one process, without checkpoints")
    guide = options.get("guide")
    if guide != "normal":
        raise ValueError(f"fit(method='nuts') samples the posterior itself and takes no guide (got {guide!r}); "
                         "use method='svi' for a guide")


def _point_params_left(scm, target, estimates, free):
    """Params the model reads that no exact fit covers (SVI fits them before NUTS when learning)."""
    fitted = {f"{node}.{suffix}" for node, e in estimates.items() for suffix in e.params}
    cuda = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        sites = trace(target).get_trace().nodes
    return [name for name, site in sites.items()
            if site["type"] == "param" and name not in fitted and name.split(".")[0] not in free]


def fit_nuts(options):
    """:func:`causalppl.causal.fit.fit` with ``method="nuts"``; ``options`` are fit's arguments as called."""
    scm, data = options["scm"], options["data"]
    inputs = dict(options["inputs"])
    nuts_options = _pop_nuts_options(inputs)
    _refuse(options)
    check_options(method="auto", steps=options["steps"], lr=options["lr"], num_particles=options["num_particles"],
                  posterior_draws_kept=options["posterior_draws_kept"], alpha=options["alpha"], tol=options["tol"])
    learn_params, device, progress = options["learn_params"], options["device"], options["progress"]
    if options["seed"] is not None:
        set_rng_seed(options["seed"])
    device_context = torch.device(device) if device is not None else contextlib.nullcontext()
    with device_context:
        scm, data, inputs, model, free = data_model(scm, data, inputs, device)
        target = block(model, hide=free) if free else model
        if learn_params:
            standardize_from_data(scm, data)
        estimates = _exact_estimates(scm, _known_values(scm, data, inputs), "auto", learn_params, options["alpha"])
        result = FitResult(scm, model, _NoGuide(), device=device, estimates=estimates,
                           notes=[note for e in estimates.values() for note in e.notes])
        left = _point_params_left(scm, target, estimates, free) if learn_params else []
        if left:
            fitted = [f"{node}.{suffix}" for node, e in estimates.items() for suffix in e.params]
            _run_svi(result, target, "normal", options["optim"], options["lr"], options["steps"],
                     options["num_particles"], True, progress, fitted, options["tol"])
            result.notes.append(
                f"point params {', '.join(left)} were fitted by SVI first ({options['steps']} steps) and held "
                "at their fitted values while NUTS sampled the latent sites (empirical Bayes)")
        mcmc = _run_nuts(target, nuts_options, progress, scm)
        _keep(result, mcmc, nuts_options, options["posterior_draws_kept"], left, estimates)
    if learn_params:
        _record_fit(scm, data, options)
    return result


def _traceable(scm):
    """Whether every mechanism is one whose control flow never depends on the values (safe to JIT)."""
    from causalppl.graph.expr import Expression
    from causalppl.graph.mechanism import FixedDistribution

    kinds = (Expression, FixedDistribution, *LEARNABLE)
    return all(isinstance(scm.mechanism(node).fn, kinds) for node in scm.nodes if node not in scm.interventions)


def _run_nuts(target, nuts_options, progress, scm):
    jit = nuts_options["jit_compile"]
    jit = _traceable(scm) if jit is None else bool(jit)
    kernel = NUTS(target, step_size=nuts_options["step_size"], adapt_step_size=nuts_options["adapt_step_size"],
                  adapt_mass_matrix=nuts_options["adapt_mass_matrix"], full_mass=nuts_options["full_mass"],
                  target_accept_prob=nuts_options["target_accept_prob"],
                  max_tree_depth=nuts_options["max_tree_depth"], jit_compile=jit)
    mcmc = MCMC(kernel, num_samples=nuts_options["num_samples"], warmup_steps=nuts_options["warmup_steps"],
                num_chains=nuts_options["num_chains"], disable_progbar=not progress)
    try:
        mcmc.run()
    except ValueError as err:
        if "discrete" in str(err):
            raise ValueError(f"fit(method='nuts'): {err}. A latent discrete node without a finite support "
                             "cannot be summed out by NUTS; observe it, or use method='svi'") from err
        raise
    return mcmc


def _keep(result, mcmc, nuts_options, kept, left, estimates):
    """Store the draws: the guide that replays them, the weights' posterior bank, convergence, notes."""
    scm = result.scm
    samples = mcmc.get_samples()
    prototype = mcmc.kernel.prototype_trace
    batch_dims = {name: len(prototype.nodes[name]["fn"].batch_shape) for name in samples}
    result.guide = PosteriorSamples(samples, batch_dims)
    result.mcmc = mcmc
    result.method = ("mle+" if estimates else "") + ("svi+" if left else "") + "nuts"
    sites = [site for names in scm.model.global_sites.values() for site in names if site in samples]
    if sites:
        total = samples[sites[0]].shape[0]
        index = (torch.linspace(0, total - 1, kept).round().long() if total > kept
                 else torch.arange(total))
        scm._state.posterior = {site: samples[site][index.to(samples[site].device)].detach() for site in sites}
    diagnostics = mcmc.diagnostics()
    r_hats, n_effs = {}, {}
    for name in samples:
        r_hat = diagnostics[name]["r_hat"].double()
        n_eff = diagnostics[name]["n_eff"].double()
        r_hats[name] = float(r_hat.nan_to_num(1.0).max()) if r_hat.numel() else 1.0
        n_effs[name] = float(n_eff.nan_to_num(math.inf).min()) if n_eff.numel() else math.inf
    divergences = sum(len(d) for d in diagnostics.get("divergences", {}).values())
    chains, draws, warmup = nuts_options["num_chains"], nuts_options["num_samples"], nuts_options["warmup_steps"]
    worst = max(r_hats.values(), default=1.0)
    fewest = min(n_effs.values(), default=math.inf)
    result.notes.append(
        f"NUTS: {chains} chain(s) x {draws} draws after {warmup} warmup steps; max split r_hat {worst:.3f}, "
        f"min n_eff {fewest:.0f}, {divergences} divergence(s); mcmc.summary() prints the table")
    result.moving = [name for name, r_hat in r_hats.items() if r_hat > R_HAT_ALARM]
    result.converged = not result.moving
    if result.moving:
        warnings.warn(
            f"NUTS has not converged: split r_hat above {R_HAT_ALARM} at {', '.join(result.moving)}; run more "
            "warmup_steps / num_samples or more chains", ConvergenceWarning, stacklevel=4)
