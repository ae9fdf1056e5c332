"""Automatic guides: a variational family built from a model's latent sites.

On its first call an autoguide runs the model once (blocked, without
gradients) to find the latent sample sites (not observed, not intervened,
not deterministic), maps each site's support to unconstrained space with
``torch.distributions.biject_to`` and creates its params there. Afterwards it
is an ordinary guide: ``guide(*args, **kwargs)`` samples every latent site and
returns a dict name -> value.

- :class:`AutoNormal`: an independent Normal per unconstrained entry.
- :class:`AutoDelta`: a point mass per site (MAP estimation).
- :class:`AutoMultivariateNormal`: one correlated Normal over all entries.

>>> import torch, causalppl as cp
>>> cp.clear_param_store()
>>> def model():
...     w = cp.sample("weight", cp.dist.Normal(8.5, 1.0))
...     cp.sample("measurement", cp.dist.Normal(w, 0.75), obs=torch.tensor(9.5))
>>> guide = cp.infer.autoguide.AutoNormal(model)
>>> sorted(guide())
['weight']
>>> sorted(cp.get_param_store().keys())
['AutoNormal.locs.weight', 'AutoNormal.scales.weight']

Subsampled plates: the guide draws each step's rows through the handler
stack, so under an ELBO the model's plate of the same name replays them and
both see the same rows. ``create_plates(*args, **kwargs) -> plate(s)`` can
instead give plates with explicit ``subsample=`` indices.
"""

from __future__ import annotations

import functools
import sys
import types
import weakref
from contextlib import ExitStack

import torch
from torch.distributions import biject_to, constraints, transform_to
from torch.distributions.transforms import ComposeTransform, IndependentTransform

from causalppl.distributions import Delta, LowRankMultivariateNormal, MultivariateNormal, Normal
from causalppl.handlers import block, get_mask, replay, trace
from causalppl.nn.module import PyroModule
from causalppl.params import get_param_store, simplify_transform
from causalppl.runtime import Messenger, draw, param, plate, sample

# ---------------------------------------------------------------------------
# Initialisation strategies: site -> constrained initial value
# ---------------------------------------------------------------------------


def init_to_feasible(site=None):
    """Initialise at the image of unconstrained zero (e.g. 0 for reals, 1 for positives).

    >>> import causalppl as cp
    >>> site = {"fn": cp.dist.LogNormal(0.0, 1.0), "value": cp.dist.LogNormal(0.0, 1.0).sample()}
    >>> init_to_feasible(site)
    tensor(1.)
    """
    if site is None:
        return init_to_feasible
    transform = biject_to(site["fn"].support)
    unconstrained = transform.inv(site["value"].detach())
    return transform(torch.zeros_like(unconstrained))


def init_to_sample(site=None):
    """Initialise at a fresh draw from the model's prior for the site.

    >>> import causalppl as cp
    >>> site = {"fn": cp.dist.Normal(0.0, 1.0), "value": cp.dist.Normal(0.0, 1.0).sample()}
    >>> init_to_sample(site).shape
    torch.Size([])
    """
    if site is None:
        return init_to_sample
    return site["fn"].sample().detach()


def _no_init(site):
    raise ValueError(f"no init strategy for site '{site['name']}' (fallback=None)")


def init_to_median(site=None, num_samples=15, *, fallback=init_to_feasible):
    """Initialise at the element-wise median of ``num_samples`` prior draws; :func:`init_to_feasible` for
    a multivariate site (its median is undefined), ``fallback`` where the draws fail or leave the support.

    >>> import causalppl as cp
    >>> site = {"fn": cp.dist.Normal(3.0, 1e-4), "value": cp.dist.Normal(3.0, 1e-4).sample()}
    >>> round(init_to_median(site).item(), 2)
    3.0
    """
    if site is None:
        return functools.partial(init_to_median, num_samples=num_samples, fallback=fallback)
    if any(size > 1 for size in site["fn"].event_shape):  # the median of a multivariate site is undefined
        return init_to_feasible(site)
    try:
        draws = site["fn"].sample(torch.Size((num_samples,))).detach()
        value = draws.median(dim=0).values
        if bool(site["fn"].support.check(value).all()) and bool(torch.isfinite(value).all()):
            return value
    except (NotImplementedError, RuntimeError, ValueError):
        pass
    return (fallback or _no_init)(site)


def init_to_mean(site=None, *, fallback=init_to_median):
    """Initialise at the prior mean (``fallback``, by default the median, when it is unknown or infinite).

    >>> import causalppl as cp
    >>> site = {"fn": cp.dist.Normal(2.0, 1.0), "value": cp.dist.Normal(2.0, 1.0).sample()}
    >>> init_to_mean(site)
    tensor(2.)
    """
    if site is None:
        return functools.partial(init_to_mean, fallback=fallback)
    try:
        value = site["fn"].mean.detach()
        value = value.expand(site["value"].shape).clone()
        if bool(torch.isfinite(value).all()) and bool(site["fn"].support.check(value).all()):
            return value
    except (NotImplementedError, RuntimeError, ValueError):
        pass
    return (fallback or _no_init)(site)


def init_to_uniform(site=None, radius=2.0):
    """Initialise at a uniform draw from ``(-radius, radius)`` in unconstrained space, mapped to the support.

    >>> import torch, causalppl as cp
    >>> site = {"fn": cp.dist.LogNormal(0.0, 1.0), "value": torch.tensor(1.0)}
    >>> bool(torch.exp(torch.tensor(-2.0)) < init_to_uniform(site) < torch.exp(torch.tensor(2.0)))
    True
    """
    if site is None:
        return functools.partial(init_to_uniform, radius=radius)
    transform = biject_to(site["fn"].support)
    unconstrained = transform.inv(site["value"].detach())
    return transform(torch.rand_like(unconstrained) * (2 * radius) - radius)


def init_to_value(site=None, values=None, *, fallback=init_to_uniform):
    """Initialise the sites named in ``values`` there, the others with ``fallback`` (Pyro's default:
    :func:`init_to_uniform`; None makes a site without a value an error).

    >>> import torch, causalppl as cp
    >>> init = init_to_value(values={"w": torch.tensor(9.0)})
    >>> init({"name": "w", "fn": cp.dist.Normal(0.0, 1.0), "value": torch.tensor(0.0)})
    tensor(9.)
    """
    if site is None:
        return functools.partial(init_to_value, values=values or {}, fallback=fallback)
    values = values or {}
    if site["name"] in values:
        return torch.as_tensor(values[site["name"]], dtype=site["value"].dtype, device=site["value"].device)
    return (fallback or _no_init)(site)


class _InitToGenerated:
    def __init__(self, generate):
        self.generate = generate
        self._init = None
        self._seen = set()

    def __call__(self, site):
        if self._init is None or site["name"] in self._seen:
            self._init = self.generate()  # once per run of the model
            self._seen = {site["name"]}
        else:
            self._seen.add(site["name"])
        return self._init(site)


def init_to_generated(site=None, generate=lambda: init_to_uniform):
    """Initialise with the strategy ``generate()`` returns, called afresh for each run of the model.

    >>> import torch, causalppl as cp
    >>> init = init_to_generated(generate=lambda: init_to_value(values={"w": torch.tensor(1.5)}))
    >>> init({"name": "w", "fn": cp.dist.Normal(0.0, 1.0), "value": torch.tensor(0.0)})
    tensor(1.5000)
    """
    init = _InitToGenerated(generate)
    return init if site is None else init(site)


class InitMessenger(Messenger):
    """A handler that gives each latent sample site the value of an init strategy instead of a draw.

    ``init_fn(site)`` sees the site with a prior draw as its ``value`` (for shape and dtype).

    >>> import torch, causalppl as cp
    >>> with InitMessenger(init_to_value(values={"w": torch.tensor(2.5)})):
    ...     cp.sample("w", cp.dist.Normal(0.0, 1.0))
    tensor(2.5000)
    """

    def __init__(self, init_fn):
        super().__init__()
        self.init_fn = init_fn

    def _pyro_sample(self, msg):
        self.init_site(msg)

    def init_site(self, msg):
        """Set ``msg``'s value from the strategy (a latent site without one only)."""
        if msg["value"] is not None or msg["is_observed"] or type(msg["fn"]).__name__ == "_Subsample":
            return
        site = dict(msg)
        with torch.no_grad():
            site["value"] = draw(msg["fn"], msg["name"]).detach()
            msg["value"] = torch.as_tensor(self.init_fn(site))


# Pyro's module path ``pyro.infer.autoguide.initialization``.
initialization = types.ModuleType(__name__ + ".initialization", "Initialisation strategies and InitMessenger.")
for _name in ("init_to_feasible", "init_to_generated", "init_to_mean", "init_to_median", "init_to_sample",
              "init_to_uniform", "init_to_value", "InitMessenger"):
    setattr(initialization, _name, globals()[_name])
sys.modules.setdefault(initialization.__name__, initialization)


# ---------------------------------------------------------------------------
# The shared machinery
# ---------------------------------------------------------------------------


def _is_identity(transform):
    if isinstance(transform, IndependentTransform):
        return _is_identity(transform.base_transform)
    return isinstance(transform, ComposeTransform) and not transform.parts


def _tile(value, dim, size):
    """Repeat ``value`` periodically along ``dim`` until it has ``size`` entries there."""
    current = value.shape[dim]
    if current == size:
        return value
    repeats = [1] * value.dim()
    repeats[dim] = -(-size // current)
    return value.repeat(repeats).narrow(dim, 0, size)


def _subsample(value, info, indices):
    """``value`` (full size along each plate) restricted to this run's plate rows."""
    for frame in info["frames"]:
        idx = indices.get(frame.name)
        if idx is not None:
            value = value.index_select(frame.dim - info["event_dim"], idx.to(value.device))
    return value


def _sum_rightmost(value, dims):
    return value.reshape(value.shape[: value.dim() - dims] + (-1,)).sum(-1) if dims > 0 else value


class AutoGuide(PyroModule):
    """Base class of the automatic guides (see the module docstring).

    An autoguide is a :class:`~causalppl.nn.PyroModule` (so a torch
    ``nn.Module``): ``named_parameters()``, ``state_dict()``, ``.to(device)``
    and ``torch.save`` see its params, which are also the active param
    store's entries ``{prefix}.*`` (the store's leaf wins where both have one,
    as in Pyro). Subclasses fill ``self._sites`` in :meth:`_setup_sites` and
    sample them in :meth:`_sample_sites`. ``self._sites[name]`` holds ``fn``
    (the model's distribution), ``transform`` (unconstrained -> support),
    ``frames`` (the model site's plates), ``event_dim`` (of the unconstrained
    value), ``shape`` (full unconstrained shape) and ``init`` (initial
    unconstrained value).

    >>> import causalppl as cp
    >>> cp.clear_param_store()
    >>> guide = AutoNormal(lambda: cp.sample("z", cp.dist.Normal(0.0, 1.0)))
    >>> _ = guide()
    >>> sorted(name for name, _ in guide.named_parameters())
    ['locs.z_unconstrained', 'scales.z_unconstrained']
    """

    def __init__(self, model, init_loc_fn=init_to_median, *, create_plates=None, prefix=None):
        if not callable(model):
            raise TypeError(f"{type(self).__name__}: model must be callable, got {model!r}")
        super().__init__(name=type(self).__name__ if prefix is None else prefix)
        self.master = None
        self._model = (model,)  # a tuple, so that a PyroModule model is not a submodule of its guide
        self.init_loc_fn = init_loc_fn
        self.create_plates = create_plates
        self.prototype_trace = None
        self._sites = {}
        self._frames = {}
        self._containers = {}

    @property
    def model(self):
        """The model this guide was made for."""
        return self._model[0]

    @property
    def prefix(self):
        """The guide's name: its params are ``{prefix}.*`` in the param store (Pyro's ``_pyro_name``)."""
        return self._pyro_name

    @prefix.setter
    def prefix(self, value):
        self._pyro_name = value

    def __setattr__(self, name, value):
        if isinstance(value, AutoGuide):
            # A guide held by a guide (an AutoGuideList's part): all of them answer to the outermost.
            value._update_master(self.master if self.master is not None else weakref.ref(self))
        super().__setattr__(name, value)

    def _update_master(self, master_ref):
        self.master = master_ref
        for module in self.modules():
            if module is not self and isinstance(module, AutoGuide):
                module.master = master_ref

    # -- params: module attributes that are also param-store entries ----------

    def _container(self, path):
        """The submodule that holds param ``path`` (dotted, as Pyro's ``_deep_setattr``) and its last name."""
        found = self._containers.get(path)
        if found is not None:
            return found
        module = self
        *parents, leaf_name = path.split(".")
        for part in parents:
            child = module._modules.get(part)
            if child is None:
                child = PyroModule()
                setattr(module, part, child)
            module = child
        self._containers[path] = module, leaf_name
        return module, leaf_name

    def _guide_param(self, path, init, constraint=constraints.real):
        """The constrained param ``{prefix}.{path}`` (a ``param`` site), kept as attribute ``path`` too."""
        fullname = f"{self._pyro_name}.{path}"
        store = get_param_store()
        module, leaf_name = self._container(path)
        key = leaf_name + "_unconstrained"
        leaf = store._leaves.get(fullname)
        if leaf is None:
            leaf = module._parameters.get(key)
            if leaf is None:  # new: made from init, in the unconstrained space of transform_to(constraint)
                with torch.no_grad():
                    value = init() if callable(init) else init
                    leaf = transform_to(constraint).inv(torch.as_tensor(value).detach()).clone().requires_grad_(True)
            store._store(fullname, leaf, constraint)  # an attribute loaded with the module enters the store
        if module._parameters.get(key) is not leaf:
            module._parameters[key] = leaf  # the store's leaf wins (loaded, replaced or packed by a fit)
            module._pyro_params[leaf_name] = (constraint, None)
        return param(fullname)

    # -- setting up from one run of the model ---------------------------------

    def _setup_prototype(self, *args, **kwargs):
        tracer = trace(self.model)
        with torch.no_grad():
            block(tracer)(*args, **kwargs)
        self.prototype_trace = tracer.trace
        self._device = None
        for name in self.prototype_trace.stochastic_nodes:
            site = self.prototype_trace.nodes[name]
            if site["infer"].get("is_auxiliary"):
                continue
            support = site["fn"].support
            if support.is_discrete:
                if self._skip_discrete(name, site):
                    continue
                raise ValueError(
                    f"{type(self).__name__}: latent site '{name}' has discrete support {support}; "
                    "autoguides handle continuous latent sites only (write a guide for it, observe it, or "
                    "sum it out: enumerate it in the model, hide it from the guide with "
                    f"cp.handlers.block(model, hide=['{name}']) and fit with TraceEnum_ELBO)"
                )
            transform = simplify_transform(biject_to(support))
            self._device = site["value"].device
            # Under twin_world/multi_world a site's value spans the worlds, but only the factual
            # world is a random choice (the others follow from its noise): guide that one.
            worlds = site["infer"].get("_worlds")
            value = site["value"] if worlds is None else worlds.factual(site["value"], len(site["fn"].event_shape))
            with torch.no_grad():
                init = torch.as_tensor(self.init_loc_fn(site)).detach()
                if worlds is not None:
                    init = worlds.factual(init, len(site["fn"].event_shape))
                init = transform.inv(init.expand(value.shape))
            event_dim = transform.domain.event_dim
            # Sequential plates (``for i in plate(...)``, dim None) broadcast nothing:
            # the guide must not re-enter them as vectorised plates.
            frames = tuple(frame for frame in site["cond_indep_stack"] if frame.dim is not None
                           and frame.name != "_worlds")
            for frame in frames:
                self._frames.setdefault(frame.name, frame)
                if frame.subsample_size < frame.size:
                    init = _tile(init, frame.dim - event_dim, frame.size)
            self._sites[name] = {
                "fn": site["fn"],
                "transform": transform,
                "identity": _is_identity(transform),
                "frames": frames,
                "event_dim": event_dim,
                "site_event_dim": len(site["fn"].event_shape),
                "shape": init.shape,
                "init": init.contiguous(),
            }
        self._check_subsampling()
        self._setup_sites()

    def _skip_discrete(self, name, site):
        """Whether a discrete latent site is left to another guide (only :class:`AutoDiscreteParallel` guides them)."""
        return False

    def _check_subsampling(self):
        for frame in self._frames.values():
            drawn_by_model = frame.name in self.prototype_trace.nodes  # a replayable "plate" site
            if frame.subsample_size < frame.size and not drawn_by_model and self._create_plates_fn() is None:
                raise ValueError(
                    f"{type(self).__name__}: the model subsamples plate '{frame.name}' "
                    f"({frame.subsample_size} of {frame.size} rows) with indices it was given; pass "
                    "create_plates=lambda *args, **kwargs: cp.plate(name, size, subsample=idx) "
                    "so that the guide uses the same rows as the model"
                )

    def _setup_sites(self):
        raise NotImplementedError

    # -- plates ----------------------------------------------------------------

    def _create_plates_fn(self):
        if self.create_plates is not None:
            return self.create_plates
        master = self.master() if self.master is not None else None
        return None if master is None else master.create_plates  # parts use their list's plates

    def _user_plates(self, args, kwargs):
        create_plates = self._create_plates_fn()
        if create_plates is None:
            return {}
        plates = create_plates(*args, **kwargs)
        if plates is None:
            return {}
        if isinstance(plates, plate):
            plates = [plates]
        return {p.name: p for p in plates}

    def _plate_indices(self, args, kwargs):
        """Row indices per subsampled plate, drawn once per guide run."""
        user = self._user_plates(args, kwargs)
        indices = {}
        for name, frame in self._frames.items():
            if name in user:
                with user[name] as idx:
                    pass
                if user[name].size != frame.size:
                    raise ValueError(
                        f"{type(self).__name__}: create_plates gave plate '{name}' size "
                        f"{user[name].size}, but the model's plate has size {frame.size}"
                    )
                indices[name] = idx if user[name].subsample_size < user[name].size else None
            elif frame.subsample_size < frame.size:
                # Drawn through the handler stack: the guide's trace records the
                # rows, and ``replay`` hands the same rows to the model's plate.
                subsampled = plate(frame.name, frame.size, subsample_size=frame.subsample_size,
                                   dim=frame.dim, device=self._device)
                with subsampled as idx:
                    pass
                indices[name] = idx
            else:
                indices[name] = None
        return indices

    def _plates_for(self, info, indices, stack):
        for frame in reversed(info["frames"]):  # outermost first
            idx = indices.get(frame.name)
            if idx is None:
                stack.enter_context(plate(frame.name, frame.size, dim=frame.dim))
            else:
                stack.enter_context(plate(frame.name, frame.size, subsample=idx, dim=frame.dim))

    # -- running ---------------------------------------------------------------

    def forward(self, *args, **kwargs):
        """Sample every latent site; return a dict name -> constrained value."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        indices = self._plate_indices(args, kwargs)
        return self._sample_sites(indices)

    def call(self, *args, **kwargs):
        """The guide's values as a tuple, sorted by site name (what ``torch.jit.trace_module`` can trace).

        >>> import causalppl as cp
        >>> cp.clear_param_store()
        >>> guide = AutoDelta(lambda: cp.sample("z", cp.dist.Normal(2.0, 1.0)), init_loc_fn=init_to_mean)
        >>> [value.item() for value in guide.call()]
        [2.0]
        """
        result = self(*args, **kwargs)
        return tuple(value for _, value in sorted(result.items()))

    def _sample_sites(self, indices):
        raise NotImplementedError

    def sample_posterior(self, *args, **kwargs):
        """One draw from the guide (no gradients): a dict name -> constrained value.

        >>> import causalppl as cp
        >>> cp.clear_param_store()
        >>> guide = AutoNormal(lambda: cp.sample("z", cp.dist.Normal(0.0, 1.0)))
        >>> sorted(guide.sample_posterior())
        ['z']
        """
        with torch.no_grad():
            return {name: value.detach() for name, value in self(*args, **kwargs).items()}

    def requires_grad_(self, requires_grad=True):
        """Turn gradients of this guide's params (``{prefix}.*`` in the store) on or off; returns the guide.

        As torch's ``Module.requires_grad_``: with ``False`` an optimiser leaves them as they are.
        """
        for name, leaf in get_param_store().named_parameters():
            if name.startswith(self.prefix + "."):
                leaf.requires_grad_(requires_grad)
        for leaf in self.parameters():
            leaf.requires_grad_(requires_grad)
        return self

    def _ensure_setup(self, args, kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)

    def median(self, *args, **kwargs):
        """The guide's median of every latent site (full plate sizes), in constrained space.

        >>> import causalppl as cp
        >>> cp.clear_param_store()
        >>> guide = AutoNormal(lambda: cp.sample("z", cp.dist.LogNormal(0.0, 1.0)), init_loc_fn=init_to_feasible)
        >>> guide.median()
        {'z': tensor(1.)}
        """
        return {name: value[0] for name, value in self.quantiles([0.5], *args, **kwargs).items()}

    def quantiles(self, qs, *args, **kwargs):
        """Marginal quantiles ``qs`` of every latent site: dict name -> tensor ``(len(qs), ...)``.

        Quantiles of the unconstrained Normal marginals, mapped through the
        support's bijection (exact for element-wise monotone bijections).

        >>> import causalppl as cp
        >>> cp.clear_param_store()
        >>> guide = AutoNormal(lambda: cp.sample("z", cp.dist.Normal(0.0, 1.0)), init_loc_fn=init_to_mean)
        >>> guide.quantiles([0.5])["z"]
        tensor([0.])
        """
        self._ensure_setup(args, kwargs)
        qs = torch.as_tensor(qs, dtype=torch.get_default_dtype())
        result = {}
        with torch.no_grad():
            for name, (loc, scale) in self._marginals().items():
                info = self._sites[name]
                q = qs.to(loc.device).reshape((-1,) + (1,) * loc.dim())
                unconstrained = loc if scale is None else torch.distributions.Normal(loc, scale).icdf(q)
                unconstrained = unconstrained.expand((len(qs),) + loc.shape)
                result[name] = info["transform"](unconstrained)
        return result

    def _marginals(self):
        """name -> (unconstrained loc, unconstrained scale or None for a point mass)."""
        raise NotImplementedError


class AutoNormal(AutoGuide):
    """Mean-field guide: each unconstrained latent entry is an independent Normal.

    Params ``{prefix}.locs.{site}`` and ``{prefix}.scales.{site}`` (positive),
    with the full plate sizes (module attributes ``guide.locs.{site}`` and
    ``guide.scales.{site}``). As in Pyro, each site is drawn in two steps: an
    auxiliary site ``{site}_unconstrained`` from ``Normal(loc, scale)``, then
    the model's site as a point mass at its image under
    ``biject_to(support)``, carrying the log-Jacobian, so that the guide's
    density is that of the constrained value. The locs start at
    :func:`init_to_feasible` (unconstrained zero) unless ``init_loc_fn`` says
    otherwise.

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> def model():
    ...     s = cp.sample("s", cp.dist.LogNormal(0.0, 1.0))
    ...     cp.sample("y", cp.dist.Normal(0.0, s), obs=torch.tensor(1.0))
    >>> guide = AutoNormal(model)
    >>> svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": 0.01}), cp.infer.Trace_ELBO())
    >>> isinstance(svi.step(), float), bool(guide()["s"] > 0)
    (True, True)
    >>> [name for name in cp.handlers.trace(guide).get_trace().stochastic_nodes]
    ['s_unconstrained', 's']
    """

    def __init__(self, model, init_loc_fn=init_to_feasible, init_scale=0.1, *, create_plates=None, prefix=None):
        if init_scale <= 0:
            raise ValueError(f"AutoNormal: init_scale must be positive, got {init_scale}")
        super().__init__(model, init_loc_fn=init_loc_fn, create_plates=create_plates, prefix=prefix)
        self.init_scale = float(init_scale)

    def _setup_sites(self):
        for name in self._sites:
            self._params(name)

    def site_param_names(self, name):
        """The names of site ``name``'s params: ``(loc, scale)``, the scale positive."""
        return f"{self.prefix}.locs.{name}", f"{self.prefix}.scales.{name}"

    def _params(self, name):
        info = self._sites[name]
        loc = self._guide_param(f"locs.{name}", lambda: info["init"])
        scale = self._guide_param(
            f"scales.{name}", lambda: torch.full_like(info["init"], self.init_scale), constraints.positive
        )
        return loc, scale

    def _get_loc_and_scale(self, name):
        """Site ``name``'s unconstrained loc and scale (Pyro's name for it)."""
        return self._params(name)

    def _sample_sites(self, indices):
        values = {}
        masked = get_mask() is False
        for name, info in self._sites.items():
            loc, scale = self._params(name)
            if info["frames"]:
                loc, scale = _subsample(loc, info, indices), _subsample(scale, info, indices)
            fn = Normal(loc, scale)  # causalppl's: torch's density with fewer ops per step
            if info["event_dim"]:
                fn = torch.distributions.Independent(fn, info["event_dim"])
            with ExitStack() as stack:
                if info["frames"]:
                    self._plates_for(info, indices, stack)
                unconstrained = sample(f"{name}_unconstrained", fn, infer={"is_auxiliary": True})
                if info["identity"]:
                    value, log_density = unconstrained, 0.0
                else:
                    value = info["transform"](unconstrained)
                    log_density = 0.0
                    if not masked:
                        ldj = info["transform"].log_abs_det_jacobian(unconstrained, value)
                        log_density = -_sum_rightmost(ldj, ldj.dim() - (value.dim() - info["site_event_dim"]))
                values[name] = sample(
                    name, Delta(value, log_density=log_density, event_dim=info["site_event_dim"])
                )
        return values

    def _marginals(self):
        with torch.no_grad():
            return {name: tuple(t.detach() for t in self._params(name)) for name in self._sites}


class AutoDelta(AutoGuide):
    """Point-mass guide: maximising the ELBO with it is MAP estimation.

    One param ``{prefix}.{site}`` per latent site (attribute ``guide.{site}``),
    constrained to the site's support; the site is sampled as ``Delta(value)``.

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> guide = AutoDelta(lambda: cp.sample("z", cp.dist.Normal(2.0, 1.0)), init_loc_fn=init_to_mean)
    >>> guide()["z"].item()
    2.0
    """

    def __init__(self, model, init_loc_fn=init_to_median, *, create_plates=None, prefix=None):
        super().__init__(model, init_loc_fn=init_loc_fn, create_plates=create_plates, prefix=prefix)

    def _setup_sites(self):
        for name in self._sites:
            self._param(name)

    def site_param_names(self, name):
        """The name of site ``name``'s one param (its value, constrained to the site's support)."""
        return (f"{self.prefix}.{name}",)

    def _param(self, name):
        info = self._sites[name]
        return self._guide_param(name, lambda: info["transform"](info["init"]).detach(), info["fn"].support)

    def _sample_sites(self, indices):
        values = {}
        for name, info in self._sites.items():
            value = self._param(name)
            value = _subsample_constrained(value, info, indices)
            with ExitStack() as stack:
                self._plates_for(info, indices, stack)
                values[name] = sample(name, Delta(value, event_dim=info["site_event_dim"]))
        return values

    def _marginals(self):
        with torch.no_grad():
            return {
                name: (self._sites[name]["transform"].inv(self._param(name).detach()), None)
                for name in self._sites
            }


def _subsample_constrained(value, info, indices):
    for frame in info["frames"]:
        idx = indices.get(frame.name)
        if idx is not None:
            value = value.index_select(frame.dim - info["site_event_dim"], idx.to(value.device))
    return value


class NoLatentSitesError(RuntimeError, ValueError):
    """A joint-vector guide was asked to guide a model without latent sites (Pyro raises RuntimeError)."""


class AutoContinuous(AutoGuide):
    """Base of the guides over one joint vector of all latent sites' unconstrained values.

    The latent sites' unconstrained values, flattened and concatenated, form
    one vector of length ``D``; subclasses give its distribution
    (:meth:`get_posterior`) from their params. The joint draw is an auxiliary
    guide site ``_{prefix}_latent``; each model site is then a ``Delta`` at
    its slice mapped to the support, carrying ``-log|det J|`` so that the
    guide's density is that of the constrained values. Subsampled plates are
    not supported (the joint couples all rows).
    """

    def __init__(self, model, init_loc_fn=init_to_median, init_scale=0.1, *, prefix=None):
        if init_scale <= 0:
            raise ValueError(f"{type(self).__name__}: init_scale must be positive, got {init_scale}")
        super().__init__(model, init_loc_fn=init_loc_fn, prefix=prefix)
        self.init_scale = float(init_scale)

    def _check_subsampling(self):
        for frame in self._frames.values():
            if frame.subsample_size < frame.size:
                raise ValueError(
                    f"{type(self).__name__}: the model subsamples plate '{frame.name}' "
                    f"({frame.subsample_size} of {frame.size} rows); a joint covariance needs "
                    "every row in each step (use AutoNormal for subsampled plates)"
                )

    def _setup_sites(self):
        if not self._sites:
            raise NoLatentSitesError(f"{type(self).__name__}: the model has no latent sample sites")
        self.latent_dim = sum(info["init"].numel() for info in self._sites.values())
        self._params()

    def _init_loc(self):
        return torch.cat([info["init"].reshape(-1) for info in self._sites.values()])

    def _params(self):
        """The guide's params, created on first use (a tuple; the first is the joint ``loc``)."""
        raise NotImplementedError

    def _loc_scale(self):
        """The joint's mean and marginal standard deviations (None for a point mass), detached."""
        raise NotImplementedError

    def _split(self, flat):
        """Cut the joint vector ``(..., D)`` into each site's unconstrained value."""
        outer = flat.shape[:-1]
        parts, pos = {}, 0
        for name, info in self._sites.items():
            shape = info["shape"]
            size = shape.numel()
            piece = flat[..., pos:pos + size]
            pos += size
            batch_dims = len(shape) - info["event_dim"]
            keep = len(outer) - min(batch_dims, len(outer))
            if any(s != 1 for s in outer[keep:]):
                raise ValueError(
                    f"{type(self).__name__}: site '{name}': cannot align the outer batch shape "
                    f"{tuple(outer)} of the joint draw with the site's shape {tuple(shape)}"
                )
            parts[name] = piece.reshape(outer[:keep] + shape)
        return parts

    def _sample_sites(self, indices):
        joint = sample(f"_{self.prefix}_latent", self.get_posterior(), infer={"is_auxiliary": True})
        return self._sites_at(joint, indices)

    def _sites_at(self, joint, indices):
        """Each model site as a point mass at its slice of ``joint``, mapped to the support (Jacobian included)."""
        values = {}
        for name, unconstrained in self._split(joint).items():
            info = self._sites[name]
            transform = info["transform"]
            value = transform(unconstrained)
            log_density = -transform.log_abs_det_jacobian(unconstrained, value)
            with ExitStack() as stack:
                self._plates_for(info, indices, stack)
                values[name] = sample(
                    name, Delta(value, log_density=log_density, event_dim=info["site_event_dim"])
                )
        return values

    def sample_latent(self, *args, **kwargs):
        """One draw of the joint unconstrained vector (shape ``(D,)``), as an auxiliary site."""
        self._ensure_setup(args, kwargs)
        return sample(f"_{self.prefix}_latent", self.get_posterior(), infer={"is_auxiliary": True})

    def _unpack_latent(self, latent):
        """``(prototype site, unconstrained value)`` for each latent site's slice of ``latent``."""
        for name, value in self._split(latent).items():
            yield self.prototype_trace.nodes[name], value

    def _marginals(self):
        with torch.no_grad():
            loc, scale = self._loc_scale()
            locs = self._split(loc)
            scales = {name: None for name in locs} if scale is None else self._split(scale)
            return {name: (locs[name], scales[name]) for name in self._sites}

    def _check_ready(self):
        if self.prototype_trace is None:
            raise RuntimeError(
                f"{type(self).__name__}: call the guide once (or .median()) before get_posterior()"
            )

    def get_posterior(self, *args, **kwargs):
        """The joint distribution (one event of ``D`` entries) over the unconstrained latent vector."""
        raise NotImplementedError


class AutoMultivariateNormal(AutoContinuous):
    """A full-covariance Normal over all latent sites' unconstrained values, concatenated.

    Params ``{prefix}.loc`` (length ``D``, the total number of unconstrained
    entries) and ``{prefix}.scale_tril`` (lower Cholesky factor, initially
    ``init_scale * I``). See :class:`AutoContinuous` for how model sites are
    drawn from the joint.

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> def model():
    ...     cp.sample("a", cp.dist.Normal(0.0, 1.0))
    ...     cp.sample("b", cp.dist.Independent(cp.dist.Normal(torch.zeros(2), 1.0), 1))
    >>> guide = AutoMultivariateNormal(model)
    >>> {k: tuple(v.shape) for k, v in guide().items()}
    {'a': (), 'b': (2,)}
    >>> tuple(cp.param("AutoMultivariateNormal.scale_tril").shape)
    (3, 3)
    """

    def _params(self):
        loc = self._guide_param("loc", self._init_loc)
        scale_tril = self._guide_param(
            "scale_tril",
            lambda: torch.eye(loc.numel(), dtype=loc.dtype, device=loc.device) * self.init_scale,
            constraints.lower_cholesky,
        )
        return loc, scale_tril

    def _loc_scale(self):
        loc, scale_tril = (t.detach() for t in self._params())
        return loc, scale_tril.pow(2).sum(-1).sqrt()  # sqrt(diag(L L^T))

    def get_posterior(self, *args, **kwargs):
        """The joint ``MultivariateNormal`` over the unconstrained latent vector.

        >>> import causalppl as cp
        >>> cp.clear_param_store()
        >>> guide = AutoMultivariateNormal(lambda: cp.sample("z", cp.dist.Normal(0.0, 1.0)))
        >>> guide.get_posterior()
        Traceback (most recent call last):
        ...
        RuntimeError: AutoMultivariateNormal: call the guide once (or .median()) before get_posterior()
        """
        self._check_ready()
        loc, scale_tril = self._params()
        return MultivariateNormal(loc, scale_tril=scale_tril)


class AutoDiagonalNormal(AutoContinuous):
    """A diagonal Normal over all latent sites' unconstrained values, concatenated.

    Like :class:`AutoMultivariateNormal` without the correlations: params
    ``{prefix}.loc`` and ``{prefix}.scale`` (positive, initially ``init_scale``).

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> guide = AutoDiagonalNormal(lambda: cp.sample("b", cp.dist.Normal(torch.zeros(2), 1.0).to_event(1)))
    >>> tuple(guide()["b"].shape), tuple(cp.param("AutoDiagonalNormal.scale").shape)
    ((2,), (2,))
    """

    def _params(self):
        loc = self._guide_param("loc", self._init_loc)
        scale = self._guide_param("scale", lambda: torch.full_like(loc, self.init_scale), constraints.positive)
        return loc, scale

    def _loc_scale(self):
        return tuple(t.detach() for t in self._params())

    def get_posterior(self, *args, **kwargs):
        """The joint diagonal ``Normal`` (one event of ``D`` entries) over the unconstrained latents."""
        self._check_ready()
        loc, scale = self._params()
        return Normal(loc, scale).to_event(1)


class AutoLowRankMultivariateNormal(AutoContinuous):
    """A Normal over the unconstrained latent vector with low-rank plus diagonal covariance.

    The covariance is ``W W^T + diag(s^2)`` with ``W = cov_factor * s[:, None]``
    (Pyro's parametrisation): params ``{prefix}.loc``, ``{prefix}.cov_factor``
    (``D x rank``, initially ``N(0, 1/rank)`` entries) and ``{prefix}.scale``
    (positive, initially ``init_scale``). ``rank`` defaults to ``round(sqrt(D))``.
    It needs ``O(D * rank)`` params instead of ``O(D^2)``.

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> guide = AutoLowRankMultivariateNormal(
    ...     lambda: cp.sample("x", cp.dist.Normal(torch.zeros(4), 1.0).to_event(1)), rank=2)
    >>> tuple(guide()["x"].shape), tuple(cp.param("AutoLowRankMultivariateNormal.cov_factor").shape)
    ((4,), (4, 2))
    """

    def __init__(self, model, init_loc_fn=init_to_median, init_scale=0.1, rank=None, *, prefix=None):
        if rank is not None and (not isinstance(rank, int) or rank < 1):
            raise ValueError(f"AutoLowRankMultivariateNormal: rank must be a positive int, got {rank!r}")
        super().__init__(model, init_loc_fn=init_loc_fn, init_scale=init_scale, prefix=prefix)
        self.rank = rank

    def _setup_sites(self):
        if self.rank is None and self._sites:
            self.rank = max(1, int(round(sum(info["init"].numel() for info in self._sites.values()) ** 0.5)))
        super()._setup_sites()

    def _params(self):
        loc = self._guide_param("loc", self._init_loc)
        cov_factor = self._guide_param(
            "cov_factor",
            lambda: loc.new_empty(loc.numel(), self.rank).normal_(0.0, self.rank ** -0.5).detach(),
        )
        scale = self._guide_param("scale", lambda: torch.full_like(loc, self.init_scale), constraints.positive)
        return loc, cov_factor, scale

    def _loc_scale(self):
        loc, cov_factor, scale = (t.detach() for t in self._params())
        return loc, ((cov_factor * scale.unsqueeze(-1)).pow(2).sum(-1) + scale.pow(2)).sqrt()

    def get_posterior(self, *args, **kwargs):
        """The joint ``LowRankMultivariateNormal`` over the unconstrained latent vector."""
        self._check_ready()
        loc, cov_factor, scale = self._params()
        return LowRankMultivariateNormal(loc, cov_factor * scale.unsqueeze(-1), scale * scale)


class AutoLaplaceApproximation(AutoContinuous):
    """MAP estimation in unconstrained space, then a Gaussian from the curvature there.

    Trained, it is a point mass at ``{prefix}.loc`` (like :class:`AutoDelta`,
    but in unconstrained space, so the log-Jacobian of each support's
    bijection is part of the objective). :meth:`laplace_approximation` then
    returns an :class:`AutoMultivariateNormal` whose covariance is the
    inverse Hessian of the negative log joint at that point.

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> def model():
    ...     z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
    ...     cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.tensor(2.0))
    >>> guide = AutoLaplaceApproximation(model, init_loc_fn=init_to_value(values={"z": 1.0}))
    >>> mvn = guide.laplace_approximation()     # posterior N(1, 1/2): the MAP is exact here
    >>> round(mvn.get_posterior().covariance_matrix.item(), 4)
    0.5
    """

    def _params(self):
        return (self._guide_param("loc", self._init_loc),)

    def _loc_scale(self):
        return self._params()[0].detach(), None

    def get_posterior(self, *args, **kwargs):
        """A point mass (one event of ``D`` entries) at the unconstrained ``loc``."""
        self._check_ready()
        return Delta(self._params()[0], event_dim=1)

    def laplace_approximation(self, *args, **kwargs):
        """An :class:`AutoMultivariateNormal` centred at ``loc`` with covariance ``H^-1``.

        ``H`` is the Hessian, in unconstrained space, of ``-log p(x, z) - log|det J|``
        at the current ``loc`` (run :meth:`__call__` or SVI first to reach the MAP).
        Its params are written to the store under the new guide's prefix.
        """
        self._ensure_setup(args, kwargs)
        loc = self._params()[0].detach()

        def loss(flat):
            guide_trace = trace(lambda: self._sites_at(flat, {})).get_trace()
            model_trace = trace(replay(self.model, trace=guide_trace)).get_trace(*args, **kwargs)
            return guide_trace.log_prob_sum() - model_trace.log_prob_sum()

        with block():
            hessian = torch.autograd.functional.hessian(loss, loc)
        with torch.no_grad():
            cov = torch.linalg.inv(hessian)
            cov = (cov + cov.transpose(-1, -2)) / 2
            try:
                scale_tril = torch.linalg.cholesky(cov)
            except RuntimeError as err:
                raise ValueError(
                    f"{type(self).__name__}: the Hessian at loc is not positive definite, so loc is not a "
                    "local MAP; train the guide (SVI) before laplace_approximation()"
                ) from err
        gaussian = AutoMultivariateNormal(self.model, init_loc_fn=self.init_loc_fn)
        gaussian._ensure_setup(args, kwargs)
        store = get_param_store()
        store[f"{gaussian.prefix}.loc"] = loc
        store[f"{gaussian.prefix}.scale_tril"] = scale_tril
        return gaussian


class AutoGuideList(AutoGuide):
    """A guide made of parts, each guiding some of the model's sites.

    Append autoguides (or guide functions) built on blocked copies of the
    model, e.g. ``AutoDelta(cp.handlers.block(model, expose=["scale"]))``;
    calling the list runs every part and returns their values together.
    As in Pyro (the list is an ``nn.Module`` holding its parts), the part
    appended ``i``-th is the submodule ``str(i)`` and its params are named
    ``{prefix}.{i}...``; ``guide.name = part`` adds a part under ``name``.
    The parts use the list's ``create_plates``.

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> def model():
    ...     cp.sample("loc", cp.dist.Normal(0.0, 1.0))
    ...     cp.sample("scale", cp.dist.LogNormal(0.0, 1.0))
    >>> guide = AutoGuideList(model)
    >>> guide.append(AutoDelta(cp.handlers.block(model, expose=["scale"])))
    >>> guide.append(AutoNormal(cp.handlers.block(model, hide=["scale"])))
    >>> sorted(guide())
    ['loc', 'scale']
    >>> sorted(cp.get_param_store().keys())
    ['AutoGuideList.0.scale', 'AutoGuideList.1.locs.loc', 'AutoGuideList.1.scales.loc']
    """

    def __init__(self, model, *, create_plates=None, prefix=None):
        super().__init__(model, create_plates=create_plates, prefix=prefix)

    def append(self, part):
        """Add a part: an :class:`AutoGuide`, or a guide function (wrapped in :class:`AutoCallable`)."""
        if not callable(part):
            raise TypeError(f"AutoGuideList.append expects an AutoGuide or a callable guide, got {part!r}")
        if not isinstance(part, AutoGuide):
            part = AutoCallable(self.model, part)
        if part.master is not None:
            raise RuntimeError(f"The module `{part._pyro_name}` is already added.")
        setattr(self, str(len(self)), part)

    add = append

    @property
    def parts(self):
        """The parts, in the order they were added."""
        return list(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, index):
        return self.parts[index]

    def __iter__(self):
        return iter(self.parts)

    def _setup_prototype(self, *args, **kwargs):
        # The parts set themselves up; the list only records the model's sites.
        tracer = trace(self.model)
        with torch.no_grad():
            block(tracer)(*args, **kwargs)
        self.prototype_trace = tracer.trace

    def forward(self, *args, **kwargs):
        """Run every part; return a dict name -> value of everything they sampled."""
        if not self._modules:
            raise ValueError("AutoGuideList: append at least one guide before calling it")
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        result = {}
        for part in self.parts:
            values = part(*args, **kwargs)
            if isinstance(values, dict):
                result.update(values)
        return result

    def _collect(self, method, *args, **kwargs):
        result = {}
        for part in self.parts:
            result.update(getattr(part, method)(*args, **kwargs))
        return result

    def median(self, *args, **kwargs):
        """Every part's median, together."""
        return self._collect("median", *args, **kwargs)

    def quantiles(self, qs, *args, **kwargs):
        """Every part's quantiles, together."""
        return self._collect("quantiles", qs, *args, **kwargs)


class AutoCallable(AutoGuide):
    """A guide function as an :class:`AutoGuide` (what :meth:`AutoGuideList.append` wraps plain guides in).

    ``median(*args, **kwargs)`` gives its :meth:`median` (by default none: ``{}``).
    """

    def __init__(self, model, guide, median=None):
        super().__init__(model)
        if not callable(guide):
            raise TypeError(f"AutoCallable: guide must be callable, got {guide!r}")
        self._guide = (guide,)
        self._median = median

    @property
    def guide(self):
        return self._guide[0]

    def forward(self, *args, **kwargs):
        values = self.guide(*args, **kwargs)
        return values if isinstance(values, dict) else {}

    def median(self, *args, **kwargs):
        return {} if self._median is None else self._median(*args, **kwargs)

    def quantiles(self, qs, *args, **kwargs):
        raise NotImplementedError(f"AutoCallable: the guide {self.guide!r} has no quantiles")


from causalppl.infer import autoguide_utils as utils  # noqa: E402  (Pyro's ``autoguide.utils``)
from causalppl.infer.autoguide_discrete import AutoDiscreteParallel  # noqa: E402

sys.modules.setdefault(__name__ + ".utils", utils)
from causalppl.infer.autoguide_flows import AutoIAFNormal, AutoNormalizingFlow  # noqa: E402

__all__ = [
    "AutoCallable", "AutoContinuous", "AutoDelta", "AutoDiagonalNormal", "AutoDiscreteParallel", "AutoGuide",
    "AutoGuideList", "AutoIAFNormal", "AutoLaplaceApproximation", "AutoLowRankMultivariateNormal",
    "AutoMultivariateNormal", "AutoNormal", "AutoNormalizingFlow", "NoLatentSitesError", "init_to_feasible",
    "init_to_generated", "init_to_mean", "init_to_median", "init_to_sample", "init_to_uniform", "init_to_value",
    "InitMessenger",
]
