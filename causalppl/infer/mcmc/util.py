"""The target of HMC and NUTS: a model's potential energy in unconstrained space.

:class:`ModelPotential` runs the model once to find its latent sample sites
(not observed, not intervened, not deterministic) and lays their
unconstrained values out in one flat vector ``z``. Each site is mapped to its
support by ``biject_to(fn.support)``, worked out afresh on every run (so a
support that depends on another latent, ``Uniform(0, theta)``, is followed),
and the potential energy is

    U(z) = -( sum of every site's (masked, scaled) log density
              + sum of each latent's log |det Jacobian| of unconstrained -> support ),

with observed sites scored at their data. :func:`initialize_model` picks
the starting point (``init_to_uniform``: uniform in ``(-2, 2)`` in
unconstrained space, as in Pyro) and returns Pyro's
``(initial_params, potential_fn, transforms, prototype_trace)``.

The summaries (:func:`summary`, :func:`print_summary`, :func:`diagnostics`)
take samples grouped by chain, ``site -> (chains, draws, *shape)``.

>>> import torch, causalppl as cp
>>> def model():
...     s = cp.sample("s", cp.dist.LogNormal(0.0, 1.0))
...     cp.sample("y", cp.dist.Normal(0.0, s), obs=torch.tensor(1.0))
>>> potential = ModelPotential(model)
>>> list(potential.sites), potential.size
(['s'], 1)
>>> energy, grad, values = potential.evaluate(torch.zeros(1))
>>> round(energy.item(), 4), values["s"].item()  # s = exp(0): -log LogNormal(1 | 0, 1) - log N(1 | 0, 1) - 0
(2.3379, 1.0)
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch.distributions import biject_to
from torch.distributions.transforms import ComposeTransform, IndependentTransform

from causalppl import runtime
from causalppl.enumeration import EnumMessenger, config_enumerate
from causalppl.handlers import block, condition, trace
from causalppl.infer import diagnostics as stats
from causalppl.infer.discrete import infer_discrete
from causalppl.infer.predictive import max_plate_nesting as _plate_nesting_of
from causalppl.infer.traceenum import trace_enumerated_log_joint
from causalppl.runtime import Messenger
from causalppl.trace import contributes_log_prob, log_prob_of

__all__ = [
    "ModelPotential", "diagnostics", "init_to_uniform", "initialize_model", "predictive", "print_summary",
    "select_samples", "summary",
]


# ---------------------------------------------------------------------------
# Initialisation strategies (site -> constrained value), as in Pyro's autoguide
# ---------------------------------------------------------------------------


def init_to_uniform(site=None, radius=2.0):
    """A constrained value whose unconstrained image is uniform in ``(-radius, radius)`` (Pyro's default).

    >>> import causalppl as cp
    >>> site = {"fn": cp.dist.LogNormal(0.0, 1.0), "value": torch.tensor(1.0)}
    >>> value = init_to_uniform(site)
    >>> bool(torch.exp(torch.tensor(-2.0)) < value < torch.exp(torch.tensor(2.0)))
    True
    """
    if site is None:
        return functools.partial(init_to_uniform, radius=radius)
    value = site["value"]
    if value is None:
        value = site["fn"].sample()
    transform = biject_to(site["fn"].support)
    unconstrained = transform.inv(value.detach())
    return transform(torch.rand_like(unconstrained) * (2 * radius) - radius)


# ---------------------------------------------------------------------------
# The potential energy
# ---------------------------------------------------------------------------


@dataclass
class LatentSite:
    """One latent site's place in the flat vector and its shapes."""

    name: str
    shape: torch.Size  # of its constrained value
    unconstrained_shape: torch.Size
    offset: int
    numel: int
    dtype: torch.dtype
    device: torch.device
    fn_repr: str = ""


class SiteSetError(RuntimeError):
    """A run of the model visited other latent sites than its first run did."""


class SubsampleError(NotImplementedError, ValueError):
    """HMC and NUTS need the full data: a plate that subsamples (a ValueError, and Pyro's NotImplementedError)."""


class _Evaluate(Messenger):
    """Sets each latent site from its unconstrained value and sums the joint log density."""

    def __init__(self, pieces, transforms, enumerated=frozenset()):
        super().__init__()
        self.pieces = pieces  # name -> unconstrained tensor
        self.transforms = transforms  # user-given name -> (constrained -> unconstrained) transform
        self.enumerated = enumerated  # discrete sites summed out: scored from the trace, not here
        self.values = {}
        self.terms = []

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["is_observed"] or msg["intervened"]:
            return
        name = msg["name"]
        if name in self.enumerated:
            return
        piece = self.pieces.get(name)
        if piece is None:
            if contributes_log_prob(msg):
                raise SiteSetError(
                    f"MCMC: latent site '{name}' was not in the model's first run; HMC and NUTS need the same "
                    "latent sites on every run (no random control flow over which sites exist)")
            return
        given = self.transforms.get(name)
        transform = given.inv if given is not None else biject_to(msg["fn"].support)
        if _is_identity(transform):
            value = piece
        else:
            value = transform(piece)
            self.terms.append(transform.log_abs_det_jacobian(piece, value).sum())
        self.values[name] = value
        msg["value"] = value

    def postprocess_message(self, msg):
        if msg["type"] == "sample" and contributes_log_prob(msg) and not self.enumerated:
            self.terms.append(log_prob_of(msg).sum())
        elif msg["type"] == "param" and isinstance(msg["value"], torch.Tensor):
            msg["value"] = msg["value"].detach()  # params are constants here: no gradient through them


def _is_identity(transform):
    """The identity (also wrapped as an event transform): no change of variables, no Jacobian."""
    while isinstance(transform, IndependentTransform):
        transform = transform.base_transform
    return isinstance(transform, ComposeTransform) and not transform.parts


def _is_numerical_failure(err):
    """Errors a model raises where the potential is infinite (a Cholesky of a non-PD matrix, ...)."""
    if isinstance(err, torch.linalg.LinAlgError):
        return True
    text = str(err)
    return any(word in text for word in ("singular", "positive-definite", "positive definite", "not invertible"))


class ModelPotential:
    """``U(z)`` and its gradient for a model's latent sites, laid out in one flat vector.

    ``sites`` maps each latent site to its :class:`LatentSite` (in the model's
    order); ``size`` is the length of ``z``. ``transforms`` (optional) maps
    site names to transforms from the support to unconstrained space (Pyro's
    convention), overriding ``biject_to``.
    """

    def __init__(self, model, model_args=(), model_kwargs=None, transforms=None, kernel="MCMC", jit_compile=False,
                 max_plate_nesting=None):
        if not callable(model):
            raise TypeError(f"{kernel}: model must be callable, got {model!r}")
        self.model = model
        self.args = tuple(model_args)
        self.kwargs = dict(model_kwargs or {})
        self.user_transforms = dict(transforms or {})
        self.kernel = kernel
        tracer = trace(self.model)
        with torch.no_grad():
            block(tracer)(*self.args, **self.kwargs)
        self.prototype_trace = tracer.trace
        self.sites = OrderedDict()
        self.transforms = {}
        self.enumerated = []  # discrete latent sites, summed out of the potential (see trace_enumerated_log_joint)
        offset = 0
        for name, site in self.prototype_trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or not contributes_log_prob(site):
                continue
            if _enumerable(site):
                self.enumerated.append(name)
                continue
            self._check_site(name, site)
            value = site["value"]
            transform = self.user_transforms.get(name) or biject_to(site["fn"].support).inv
            self.transforms[name] = transform
            shape = torch.Size(transform.forward_shape(value.shape))
            numel = shape.numel()
            self.sites[name] = LatentSite(name, value.shape, shape, offset, numel, value.dtype, value.device,
                                          repr(site["fn"]))
            offset += numel
        self.size = offset
        first = next(iter(self.sites.values()), None)
        self.dtype = torch.get_default_dtype()
        if first is not None:
            self.dtype = first.dtype
            for site in self.sites.values():
                self.dtype = torch.promote_types(self.dtype, site.dtype)
        self.device = first.device if first is not None else torch.get_default_device()
        self.max_plate_nesting = max_plate_nesting
        if self.enumerated:
            if self.max_plate_nesting is None:
                self.max_plate_nesting = _plate_nesting_of(self.prototype_trace)
            self._enum_model = config_enumerate(self.model, default="parallel")
        single = len(self.sites) == 1 and first.unconstrained_shape == (first.numel,)
        self._whole = first.name if single else None
        self._traced = None
        self.jit_compile = bool(jit_compile) and self.size > 0
        if self.jit_compile:
            self._compile()

    # -- the JIT ------------------------------------------------------------------------

    def _param_leaves(self):
        """The leaf tensors behind the params the model read (constants while sampling)."""
        leaves = []
        for site in self.prototype_trace.nodes.values():
            value = site["value"] if site["type"] == "param" else None
            if not isinstance(value, torch.Tensor):
                continue
            ref = getattr(value, "unconstrained", None)
            leaf = ref() if callable(ref) else None
            leaf = value if leaf is None and value.is_leaf else leaf
            if leaf is not None and leaf.requires_grad:
                leaves.append(leaf)
        return leaves

    def _prototype_point(self):
        values = {name: self.prototype_trace.nodes[name]["value"].detach() for name in self.sites}
        return self.join({name: self.transforms[name](value) for name, value in values.items()})

    def _compile(self):
        """Trace the potential with ``torch.jit.trace`` (Pyro's ``jit_compile``): the model's Python runs once.

        The traced graph fixes the model's control flow and any random draws
        that do not depend on the latent sites; where tracing fails, or the
        traced potential disagrees with the eager one, the potential runs
        eagerly (with a warning).
        """
        names = list(self.sites)

        def potential(z):
            energy, values = self._run(self.split(z))
            return (energy,) + tuple(values[name] for name in names)

        leaves = self._param_leaves()
        z0 = self._prototype_point()
        try:
            for leaf in leaves:
                leaf.requires_grad_(False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(potential, (z0.clone().requires_grad_(True),), check_trace=False)
                check = traced(z0)[0].detach()
        except Exception as err:  # noqa: BLE001 - any tracing failure means: run eagerly
            warnings.warn(f"{self.kernel}: jit_compile could not trace the model ({type(err).__name__}: {err}); "
                          "the potential runs eagerly", RuntimeWarning, stacklevel=3)
            return
        finally:
            for leaf in leaves:
                leaf.requires_grad_(True)
        eager = self._run(self.split(z0))[0].detach()
        if not torch.allclose(check, eager, rtol=1e-4, atol=1e-4, equal_nan=True):
            warnings.warn(f"{self.kernel}: the traced potential ({float(check):.6g}) disagrees with the eager one "
                          f"({float(eager):.6g}); the potential runs eagerly", RuntimeWarning, stacklevel=3)
            return
        self._traced = traced
        self._names = names

    def _run_traced(self, z):
        outputs = self._traced(z)
        return outputs[0], dict(zip(self._names, outputs[1:]))

    def _check_site(self, name, site):
        fn = site["fn"]
        if fn.support.is_discrete or site["infer"].get("enumerate"):
            raise ValueError(
                f"{self.kernel}: latent site '{name}' is discrete ({type(fn).__name__}, support {fn.support}); "
                "HMC and NUTS sample continuous latent sites only: observe it, or sum it out of the model "
                "(enumeration)"
            )
        for frame in site["cond_indep_stack"]:
            if 0 < frame.size and frame.subsample_size < frame.size:
                raise SubsampleError(
                    f"{self.kernel}: site '{name}' is in plate '{frame.name}', which subsamples "
                    f"{frame.subsample_size} of {frame.size} rows; HMC and NUTS need the full data "
                    "(no subsample_size)"
                )
        if not torch.is_floating_point(site["value"]):
            raise ValueError(f"{self.kernel}: latent site '{name}' has a non-float value ({site['value'].dtype})")

    # -- flat vector <-> sites ---------------------------------------------------------

    def split(self, z):
        """The flat vector ``z`` as a dict site -> unconstrained tensor (views)."""
        if self._whole is not None:  # one site whose unconstrained value is a vector: z itself
            return {self._whole: z}
        return {name: z[s.offset:s.offset + s.numel].reshape(s.unconstrained_shape) for name, s in self.sites.items()}

    def join(self, pieces):
        """A dict site -> unconstrained tensor as the flat vector."""
        if not self.sites:
            return torch.zeros(0, dtype=self.dtype, device=self.device)
        return torch.cat([torch.as_tensor(pieces[name], dtype=self.dtype, device=self.device).reshape(-1)
                          for name in self.sites])

    # -- evaluation -------------------------------------------------------------------

    def _run(self, pieces):
        handler = _Evaluate(pieces, self.user_transforms, frozenset(self.enumerated))
        if self.enumerated:
            enumerating = EnumMessenger(self._enum_model, first_available_dim=-self.max_plate_nesting - 1)
            with handler:
                model_trace = trace(enumerating).get_trace(*self.args, **self.kwargs)
            handler.terms.append(trace_enumerated_log_joint(model_trace))
        else:
            with handler:
                self.model(*self.args, **self.kwargs)
        if len(handler.values) != len(self.sites):
            missing = [name for name in self.sites if name not in handler.values]
            raise SiteSetError(
                f"MCMC: latent site(s) {', '.join(map(repr, missing))} of the model's first run were not visited "
                "in this run; HMC and NUTS need the same latent sites on every run")
        log_joint = sum(handler.terms) if handler.terms else torch.zeros((), dtype=self.dtype, device=self.device)
        return -torch.as_tensor(log_joint), handler.values

    def evaluate(self, z, grad=True):
        """``(U(z), dU/dz, constrained values)``; ``U`` is ``inf`` (and the gradient zero) where the
        model's density is not finite or its numerics fail."""
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(grad)
            try:
                if self._traced is not None:
                    energy, values = self._run_traced(leaf)
                else:
                    energy, values = self._run(self.split(leaf))
            except (ValueError, RuntimeError) as err:
                if isinstance(err, SiteSetError) or not _is_numerical_failure(err):
                    raise
                return _inf_like(z), torch.zeros_like(z), {}
            if not math.isfinite(float(energy.detach())):
                return _inf_like(z), torch.zeros_like(z), {}
            if grad and energy.requires_grad:
                (gradient,) = torch.autograd.grad(energy, leaf, allow_unused=True)
                gradient = torch.zeros_like(z) if gradient is None else gradient
            else:
                gradient = torch.zeros_like(z)
        return energy.detach(), gradient, {name: value.detach() for name, value in values.items()}

    def constrained(self, z):
        """The constrained values of the latent sites at ``z`` (one run of the model, no gradient)."""
        with torch.no_grad():
            _, values = self._run(self.split(z.detach()))
        return {name: value.detach() for name, value in values.items()}

    def potential_fn(self, params):
        """Pyro's ``potential_fn``: a dict site -> unconstrained tensor -> the potential energy."""
        return self._run(dict(params))[0]

    def sample_discrete(self, values):
        """The enumerated sites drawn from their posterior given the continuous sites' constrained ``values``."""
        if not self.enumerated:
            return {}
        conditioned = condition(self._enum_model, data=dict(values))
        sampler = infer_discrete(conditioned, first_available_dim=-self.max_plate_nesting - 1, temperature=1)
        with torch.no_grad(), block():
            drawn = trace(sampler).get_trace(*self.args, **self.kwargs)
        return {name: drawn.nodes[name]["value"].detach() for name in self.enumerated}

    def initial_point(self, init_strategy, max_tries=100):
        """A flat ``z`` whose potential and gradient are finite, drawn by ``init_strategy`` (site -> value)."""
        for _ in range(max_tries):
            z = self._draw_initial(init_strategy)
            energy, gradient, _ = self.evaluate(z)
            if bool(torch.isfinite(energy)) and bool(torch.isfinite(gradient).all()):
                return z
        raise ValueError(
            f"{self.kernel}: found no initial point with a finite potential energy and gradient in {max_tries} "
            "tries; give initial_params (unconstrained values) or another init_strategy")

    def _draw_initial(self, init_strategy):
        chooser = _Initialize(self, init_strategy)
        with torch.no_grad(), chooser:
            self.model(*self.args, **self.kwargs)
        missing = [name for name in self.sites if name not in chooser.pieces]
        if missing:
            raise SiteSetError(f"MCMC: latent site(s) {', '.join(map(repr, missing))} were not visited when "
                               "choosing the initial point")
        return self.join(chooser.pieces)


def _enumerable(site):
    """A discrete latent site HMC and NUTS can sum out: a finite support they can enumerate."""
    fn = site["fn"]
    return fn.support.is_discrete and getattr(fn, "has_enumerate_support", False) \
        and site["infer"].get("enumerate") != "sequential"


def _inf_like(z):
    return torch.full((), math.inf, dtype=z.dtype, device=z.device)


class _Initialize(Messenger):
    """Sets each latent site to ``init_strategy(site)`` and records its unconstrained value."""

    def __init__(self, potential, init_strategy):
        super().__init__()
        self.potential = potential
        self.init_strategy = init_strategy
        self.pieces = {}

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["is_observed"] or msg["intervened"]:
            return
        name = msg["name"]
        if name not in self.potential.sites:
            return
        site = dict(msg)
        site["value"] = runtime.draw(msg["fn"], name).detach()
        value = torch.as_tensor(self.init_strategy(site)).detach()
        given = self.potential.user_transforms.get(name)
        transform = given if given is not None else biject_to(msg["fn"].support).inv
        self.pieces[name] = transform(value)
        msg["value"] = value


def initialize_model(model, model_args=(), model_kwargs=None, transforms=None, max_plate_nesting=None,
                     jit_compile=False, jit_options=None, skip_jit_warnings=False, num_chains=1,
                     init_strategy=init_to_uniform, initial_params=None):
    """Pyro's ``initialize_model``: ``(initial_params, potential_fn, transforms, prototype_trace)``.

    ``initial_params`` maps each latent site to unconstrained values, with a
    leading dim of ``num_chains`` when ``num_chains > 1``; ``potential_fn``
    takes such a dict (of one chain) to the potential energy.
    """
    potential = ModelPotential(model, model_args, model_kwargs, transforms, max_plate_nesting=max_plate_nesting)
    if initial_params is None:
        points = [potential.split(potential.initial_point(init_strategy)) for _ in range(num_chains)]
        if num_chains == 1:
            initial_params = points[0]
        else:
            initial_params = {name: torch.stack([p[name] for p in points]) for name in potential.sites}
    return initial_params, potential.potential_fn, potential.transforms, potential.prototype_trace


def select_samples(samples, num_samples=None, group_by_chain=False):
    """Pyro's ``select_samples``: draws grouped by chain (``site -> (chains, draws, ...)``), flattened over
    the chains unless ``group_by_chain``, and ``num_samples`` of them picked at random with replacement.

    >>> grouped = {"x": torch.arange(6.0).reshape(2, 3)}
    >>> select_samples(grouped)["x"]
    tensor([0., 1., 2., 3., 4., 5.])
    >>> select_samples(grouped, num_samples=4, group_by_chain=True)["x"].shape
    torch.Size([2, 4])
    """
    if not group_by_chain:
        samples = {name: value.reshape((-1,) + value.shape[2:]) for name, value in samples.items()}
    if num_samples is None:
        return dict(samples)
    if not samples:
        raise ValueError("select_samples: no samples to select from (did the MCMC run have latent sites?)")
    dim = 1 if group_by_chain else 0
    first = next(iter(samples.values()))
    index = torch.randint(first.shape[dim], (num_samples,), device=first.device)
    return {name: value.index_select(dim, index) for name, value in samples.items()}


def predictive(model, posterior_samples, *args, **kwargs):
    """Pyro's deprecated ``predictive`` function: :class:`~causalppl.infer.Predictive` run once.

    Keywords ``num_samples``, ``return_sites`` and ``parallel`` go to ``Predictive``; the rest to the model.
    """
    from causalppl.infer.predictive import Predictive

    warnings.warn("The `mcmc.predictive` function is deprecated; use causalppl.infer.Predictive instead.",
                  FutureWarning, stacklevel=2)
    if kwargs.pop("return_trace", False):
        raise NotImplementedError("predictive: return_trace is not supported; use causalppl.infer.Predictive "
                                  "with cp.trace")
    options = {key: kwargs.pop(key) for key in ("num_samples", "return_sites", "parallel") if key in kwargs}
    return Predictive(model, posterior_samples=posterior_samples, **options)(*args, **kwargs)


# ---------------------------------------------------------------------------
# Summaries of grouped samples
# ---------------------------------------------------------------------------


def _safe(fn, samples):
    try:
        return fn(samples)
    except ValueError:
        return torch.full(samples.shape[2:], math.nan, dtype=samples.dtype, device=samples.device)


def diagnostics(samples, group_by_chain=True):
    """Per site: ``{"n_eff": effective sample size, "r_hat": split R-hat}``.

    ``samples`` maps sites to ``(chains, draws, *shape)`` tensors (``(draws, *shape)``
    with ``group_by_chain=False``).
    """
    out = OrderedDict()
    for name, value in samples.items():
        value = value if group_by_chain else value.unsqueeze(0)
        value = value.double() if not value.is_floating_point() else value
        out[name] = OrderedDict([("n_eff", _safe(stats.effective_sample_size, value)),
                                 ("r_hat", _safe(stats.split_gelman_rubin, value))])
    return out


def summary(samples, prob=0.9, group_by_chain=True):
    """Per site: mean, std, median, the ``prob`` highest-density interval, n_eff and r_hat (as Pyro).

    The interval's columns are named ``"5.0%"`` and ``"95.0%"`` for ``prob=0.9``.
    """
    lower, upper = f"{50 * (1 - prob):.1f}%", f"{50 * (1 + prob):.1f}%"
    out = OrderedDict()
    for name, value in samples.items():
        value = value if group_by_chain else value.unsqueeze(0)
        value = value.double() if not value.is_floating_point() else value
        flat = value.reshape((-1,) + value.shape[2:])
        interval = stats.hpdi(flat, prob)
        out[name] = OrderedDict([
            ("mean", flat.mean(0)), ("std", flat.std(0)), ("median", flat.median(0).values),
            (lower, interval[0]), (upper, interval[1]),
            ("n_eff", _safe(stats.effective_sample_size, value)),
            ("r_hat", _safe(stats.split_gelman_rubin, value)),
        ])
    return out


def format_summary(samples, prob=0.9, group_by_chain=True):
    """:func:`summary` as a text table, one row per entry of each site (``w[0]``, ``w[1]``, ...)."""
    table = summary(samples, prob, group_by_chain)
    if not table:
        return ""
    rows = []
    for name, columns in table.items():
        shape = columns["mean"].shape
        for index in itertools.product(*map(range, shape)):
            label = name + (f"[{','.join(map(str, index))}]" if shape else "")
            rows.append((label, [float(column[index]) for column in columns.values()]))
    width = max(10, max(len(label) for label, _ in rows))
    header = " " * width + "".join(f" {column:>9}" for column in next(iter(table.values())))
    lines = ["", header]
    lines += [f"{label:>{width}}" + "".join(f" {value:>9.2f}" for value in values) for label, values in rows]
    return "\n".join(lines) + "\n"


def print_summary(samples, prob=0.9, group_by_chain=True):
    """Print :func:`format_summary`."""
    text = format_summary(samples, prob, group_by_chain)
    if text:
        print(text)
