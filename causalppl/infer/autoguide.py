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
from contextlib import ExitStack

import torch
from torch.distributions import biject_to, constraints
from torch.distributions.transforms import ComposeTransform, IndependentTransform

from causalppl.distributions import Delta, LowRankMultivariateNormal, MultivariateNormal, Normal
from causalppl.handlers import block, replay, trace
from causalppl.params import get_param_store, simplify_transform
from causalppl.runtime import param, plate, sample

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


class AutoGuide:
    """Base class of the automatic guides (see the module docstring).

    Subclasses fill ``self._sites`` in :meth:`_setup_sites` and sample them in
    :meth:`_sample_sites`. ``self._sites[name]`` holds ``fn`` (the model's
    distribution), ``transform`` (unconstrained -> support), ``frames`` (the
    model site's plates), ``event_dim`` (of the unconstrained value), ``shape``
    (full unconstrained shape) and ``init`` (initial unconstrained value).
    """

    def __init__(self, model, init_loc_fn=init_to_median, create_plates=None, prefix=None):
        if not callable(model):
            raise TypeError(f"{type(self).__name__}: model must be callable, got {model!r}")
        self.model = model
        self.init_loc_fn = init_loc_fn
        self.create_plates = create_plates
        self.prefix = type(self).__name__ if prefix is None else prefix
        self.prototype_trace = None
        self._sites = {}
        self._frames = {}

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

    def _check_subsampling(self):
        for frame in self._frames.values():
            drawn_by_model = frame.name in self.prototype_trace.nodes  # a replayable "plate" site
            if frame.subsample_size < frame.size and not drawn_by_model and self.create_plates is None:
                raise ValueError(
                    f"{type(self).__name__}: the model subsamples plate '{frame.name}' "
                    f"({frame.subsample_size} of {frame.size} rows) with indices it was given; pass "
                    "create_plates=lambda *args, **kwargs: cp.plate(name, size, subsample=idx) "
                    "so that the guide uses the same rows as the model"
                )

    def _setup_sites(self):
        raise NotImplementedError

    # -- plates ----------------------------------------------------------------

    def _user_plates(self, args, kwargs):
        if self.create_plates is None:
            return {}
        plates = self.create_plates(*args, **kwargs)
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

    def __call__(self, *args, **kwargs):
        """Sample every latent site; return a dict name -> constrained value."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        indices = self._plate_indices(args, kwargs)
        return self._sample_sites(indices)

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
    with the full plate sizes; a site's value is
    ``biject_to(support)(Normal(loc, scale))``, and its log density is that of
    the constrained value (Jacobian included). As in Pyro, the locs start at
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
    """

    def __init__(self, model, init_loc_fn=init_to_feasible, init_scale=0.1, create_plates=None, prefix=None):
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
        loc = param(f"{self.prefix}.locs.{name}", lambda: info["init"])
        scale = param(
            f"{self.prefix}.scales.{name}",
            lambda: torch.full_like(info["init"], self.init_scale),
            constraints.positive,
        )
        return loc, scale

    def _sample_sites(self, indices):
        values = {}
        for name, info in self._sites.items():
            loc, scale = self._params(name)
            if info["frames"]:
                loc, scale = _subsample(loc, info, indices), _subsample(scale, info, indices)
            fn = Normal(loc, scale)  # causalppl's: torch's density with fewer ops per step
            if info["event_dim"]:
                fn = torch.distributions.Independent(fn, info["event_dim"])
            if not info["identity"]:
                fn = torch.distributions.TransformedDistribution(fn, [info["transform"].with_cache()])
            if not info["frames"]:
                values[name] = sample(name, fn)
                continue
            with ExitStack() as stack:
                self._plates_for(info, indices, stack)
                values[name] = sample(name, fn)
        return values

    def _marginals(self):
        with torch.no_grad():
            return {name: tuple(t.detach() for t in self._params(name)) for name in self._sites}


class AutoDelta(AutoGuide):
    """Point-mass guide: maximising the ELBO with it is MAP estimation.

    One param ``{prefix}.{site}`` per latent site, constrained to the site's
    support; the site is sampled as ``Delta(value)``.

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> guide = AutoDelta(lambda: cp.sample("z", cp.dist.Normal(2.0, 1.0)), init_loc_fn=init_to_mean)
    >>> guide()["z"].item()
    2.0
    """

    def _setup_sites(self):
        for name in self._sites:
            self._param(name)

    def site_param_names(self, name):
        """The name of site ``name``'s one param (its value, constrained to the site's support)."""
        return (f"{self.prefix}.{name}",)

    def _param(self, name):
        info = self._sites[name]
        return param(
            f"{self.prefix}.{name}",
            lambda: info["transform"](info["init"]).detach(),
            info["fn"].support,
        )

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

    def __init__(self, model, init_loc_fn=init_to_median, init_scale=0.1, prefix=None):
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
        loc = param(f"{self.prefix}.loc", self._init_loc)
        scale_tril = param(
            f"{self.prefix}.scale_tril",
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
        loc = param(f"{self.prefix}.loc", self._init_loc)
        scale = param(f"{self.prefix}.scale", lambda: torch.full_like(loc, self.init_scale), constraints.positive)
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

    def __init__(self, model, init_loc_fn=init_to_median, init_scale=0.1, rank=None, prefix=None):
        if rank is not None and (not isinstance(rank, int) or rank < 1):
            raise ValueError(f"AutoLowRankMultivariateNormal: rank must be a positive int, got {rank!r}")
        super().__init__(model, init_loc_fn=init_loc_fn, init_scale=init_scale, prefix=prefix)
        self.rank = rank

    def _setup_sites(self):
        if self.rank is None and self._sites:
            self.rank = max(1, int(round(sum(info["init"].numel() for info in self._sites.values()) ** 0.5)))
        super()._setup_sites()

    def _params(self):
        loc = param(f"{self.prefix}.loc", self._init_loc)
        cov_factor = param(
            f"{self.prefix}.cov_factor",
            lambda: loc.new_empty(loc.numel(), self.rank).normal_(0.0, self.rank ** -0.5).detach(),
        )
        scale = param(f"{self.prefix}.scale", lambda: torch.full_like(loc, self.init_scale), constraints.positive)
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
        return (param(f"{self.prefix}.loc", self._init_loc),)

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
    Each appended autoguide's params are named ``{prefix}.{i}...`` (``i``
    its position), as in Pyro, unless it was given its own prefix.

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

    def __init__(self, model, create_plates=None, prefix=None):
        super().__init__(model, create_plates=create_plates, prefix=prefix)
        self.parts = []

    def append(self, part):
        """Add a part: an :class:`AutoGuide`, or a guide function (wrapped in :class:`AutoCallable`)."""
        if not callable(part):
            raise TypeError(f"AutoGuideList.append expects an AutoGuide or a callable guide, got {part!r}")
        if not isinstance(part, AutoGuide):
            part = AutoCallable(self.model, part)
        if part.prototype_trace is None and part.prefix == type(part).__name__:
            part.prefix = f"{self.prefix}.{len(self.parts)}"
        self.parts.append(part)

    add = append

    def __setattr__(self, name, value):
        # ``guide.custom = AutoNormal(...)``: as in Pyro (an nn.ModuleList), a part set by name.
        if isinstance(value, AutoGuide) and not name.startswith("_") and "parts" in self.__dict__:
            if value.prototype_trace is None and value.prefix == type(value).__name__:
                value.prefix = f"{self.prefix}.{name}"
            self.parts.append(value)
        object.__setattr__(self, name, value)

    def __len__(self):
        return len(self.parts)

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

    def __call__(self, *args, **kwargs):
        """Run every part; return a dict name -> value of everything they sampled."""
        if not self.parts:
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
        self.guide = guide
        self._median = median

    def __call__(self, *args, **kwargs):
        values = self.guide(*args, **kwargs)
        return values if isinstance(values, dict) else {}

    def median(self, *args, **kwargs):
        return {} if self._median is None else self._median(*args, **kwargs)

    def quantiles(self, qs, *args, **kwargs):
        raise NotImplementedError(f"AutoCallable: the guide {self.guide!r} has no quantiles")


__all__ = [
    "AutoCallable", "AutoContinuous", "AutoDelta", "AutoDiagonalNormal", "AutoGuide", "AutoGuideList",
    "AutoLaplaceApproximation", "AutoLowRankMultivariateNormal", "AutoMultivariateNormal", "AutoNormal",
    "NoLatentSitesError", "init_to_feasible", "init_to_generated", "init_to_mean", "init_to_median", "init_to_sample",
    "init_to_uniform", "init_to_value",
]
