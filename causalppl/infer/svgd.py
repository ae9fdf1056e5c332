"""Stein variational gradient descent (Liu & Wang 2016): a set of particles pushed towards the posterior.

The particles live in unconstrained space as one param, ``svgd_particles``
of shape ``(num_particles, D)`` (``D``: all latent sites' unconstrained
sizes, concatenated). Each step evaluates ``log p`` of the model (plus the
log-Jacobian of the map to each site's support) at every particle in one
vectorised run, and moves particle ``n`` along

    phi(x_n) = 1/N sum_m [ k(x_m, x_n) grad log p(x_m) + grad_{x_m} k(x_m, x_n) ]

(the first term pulls particles to high density, the second keeps them
apart). ``mode="univariate"`` uses one kernel per coordinate (Singhal et
al.'s kernelized complete conditional Stein discrepancy), ``"multivariate"``
the product kernel of the original paper.

>>> import causalppl as cp
>>> cp.clear_param_store()
>>> def model():
...     cp.sample("z", cp.dist.Normal(1.0, 0.5))
>>> svgd = SVGD(model, RBFSteinKernel(), cp.optim.Adam({"lr": 0.1}), num_particles=50, max_plate_nesting=0)
>>> for _ in range(300):
...     _ = svgd.step()
>>> z = svgd.get_named_particles()["z"]
>>> round(z.mean().item(), 1), round(z.std().item(), 1)
(1.0, 0.5)
"""

from __future__ import annotations

import math

import torch
from torch.distributions import biject_to

from causalppl.handlers import block, trace
from causalppl.optim import PyroOptim
from causalppl.runtime import Messenger, param, plate

_PARTICLE_PLATE = "num_particles_vectorized"


class SteinKernel:
    """A kernel for SVGD: ``log_kernel_and_grad(particles)`` for particles of shape ``(N, D)`` returns
    ``(log_kernel, kernel_grad)``, both ``(N, N, D)``: per coordinate ``d``, ``log k(x_n, x_m)`` and the
    derivative of the log kernel with respect to ``x_{m, d}``."""

    def __init__(self, bandwidth_factor=None):
        self.bandwidth_factor = bandwidth_factor

    @property
    def bandwidth_factor(self):
        """Scale applied to the median-heuristic bandwidth (None: 1)."""
        return self._bandwidth_factor

    @bandwidth_factor.setter
    def bandwidth_factor(self, value):
        if value is not None and not value > 0.0:
            raise ValueError(f"{type(self).__name__}: bandwidth_factor must be positive, got {value}")
        self._bandwidth_factor = value

    def _bandwidth(self, norm_sq):
        """Per coordinate: the median squared distance over pairs of particles, over ``log(N + 1)``."""
        n = norm_sq.size(0)
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=norm_sq.device), diagonal=1)
        median = norm_sq[upper].median(dim=0).values
        if self.bandwidth_factor is not None:
            median = self.bandwidth_factor * median
        return median / math.log(n + 1)

    def log_kernel_and_grad(self, particles):
        raise NotImplementedError


class RBFSteinKernel(SteinKernel):
    """``k(x, y) = exp(-|x - y|^2 / h)`` per coordinate, ``h`` by the median heuristic (Liu & Wang 2016).

    >>> import torch
    >>> log_k, grad = RBFSteinKernel().log_kernel_and_grad(torch.tensor([[0.0], [1.0], [3.0]]))
    >>> tuple(log_k.shape), bool((log_k.diagonal(dim1=0, dim2=1) == 0).all())
    ((3, 3, 1), True)
    """

    @torch.no_grad()
    def log_kernel_and_grad(self, particles):
        delta = particles.unsqueeze(0) - particles.unsqueeze(1)  # [n, m] = x_m - x_n
        norm_sq = delta.pow(2)
        h = self._bandwidth(norm_sq)
        return -norm_sq / h, 2.0 * delta / h


class IMQSteinKernel(SteinKernel):
    """The inverse multi-quadric kernel ``k(x, y) = (alpha + |x - y|^2 / h)^beta`` (Chen et al., Stein points).

    >>> import torch
    >>> log_k, _ = IMQSteinKernel().log_kernel_and_grad(torch.tensor([[0.0], [1.0], [3.0]]))
    >>> round(log_k[0, 0, 0].item(), 4)  # beta * log(alpha) on the diagonal
    0.3466
    """

    def __init__(self, alpha=0.5, beta=-0.5, bandwidth_factor=None):
        if not alpha > 0.0:
            raise ValueError(f"IMQSteinKernel: alpha must be positive, got {alpha}")
        if not beta < 0.0:
            raise ValueError(f"IMQSteinKernel: beta must be negative, got {beta}")
        super().__init__(bandwidth_factor)
        self.alpha = alpha
        self.beta = beta

    @torch.no_grad()
    def log_kernel_and_grad(self, particles):
        delta = particles.unsqueeze(0) - particles.unsqueeze(1)
        norm_sq = delta.pow(2)
        h = self._bandwidth(norm_sq)
        base = self.alpha + norm_sq / h
        return self.beta * torch.log(base), (-2.0 * self.beta) * delta / h / base


class _Layout:
    """Where each latent site sits in a particle: its slice, its shape and where its particle dim is."""

    def __init__(self, name, fn, value, particle_dim):
        self.name = name
        self.transform = biject_to(fn.support)
        self.event_dim = fn.event_dim
        unconstrained = self.transform.inv(value)
        self.shape = tuple(unconstrained.shape)
        self.particle_dim = particle_dim
        self.inner_shape = tuple(unconstrained.movedim(particle_dim, 0).shape[1:])
        self.size = math.prod(self.inner_shape)
        self.init = unconstrained.movedim(particle_dim, 0).reshape(unconstrained.shape[particle_dim], -1)

    def unpack(self, block_):
        """``(N, size)`` columns of the particles -> the site's unconstrained value as the model lays it out."""
        return block_.reshape((block_.shape[0],) + self.inner_shape).movedim(0, self.particle_dim).reshape(self.shape)


class _ParticleValues(Messenger):
    """Put each latent site's particle values in the model; add up the log-Jacobians of the maps to the supports."""

    def __init__(self, fn, layouts, particles):
        super().__init__(fn)
        self.layouts = layouts
        self.particles = particles
        self.log_jacobian = 0.0

    def process_message(self, msg):
        layout = self.layouts.get(msg["name"]) if msg["type"] == "sample" else None
        if layout is None or msg["is_observed"]:
            return
        start, stop = layout.bounds
        unconstrained = layout.unpack(self.particles[:, start:stop])
        value = layout.transform(unconstrained)
        self.log_jacobian = self.log_jacobian + layout.transform.log_abs_det_jacobian(unconstrained, value).sum()
        msg["value"] = value


class SVGD:
    """``SVGD(model, kernel, optim, num_particles, max_plate_nesting, mode="univariate")``.

    ``model`` must be vectorisable (all batch dims in plates, at most
    ``max_plate_nesting`` of them) with continuous latents only. ``step(*args,
    **kwargs)`` moves the particles once and returns ``{site: mean squared
    SVGD gradient}`` (for monitoring convergence); params of the model itself
    are fitted along with the particles. ``get_named_particles()`` gives
    ``{site: tensor}`` with the particles in the leading dim.
    """

    def __init__(self, model, kernel, optim, num_particles, max_plate_nesting, mode="univariate"):
        if not callable(model):
            raise TypeError(f"SVGD: model must be callable, got {model!r}")
        if not isinstance(kernel, SteinKernel):
            raise TypeError(f"SVGD: kernel must be a SteinKernel (e.g. RBFSteinKernel()), got {kernel!r}")
        if not isinstance(optim, PyroOptim):
            raise TypeError(f"SVGD: optim must be a causalppl.optim optimiser, got {type(optim).__name__}")
        if num_particles < 2:
            raise ValueError(f"SVGD: use at least two particles, got num_particles={num_particles}")
        if max_plate_nesting < 0:
            raise ValueError(f"SVGD: max_plate_nesting must be >= 0, got {max_plate_nesting}")
        if mode not in ("univariate", "multivariate"):
            raise ValueError(f"SVGD: mode must be 'univariate' or 'multivariate', got {mode!r}")
        self.model = model
        self.kernel = kernel
        self.optim = optim
        self.num_particles = num_particles
        self.max_plate_nesting = max_plate_nesting
        self.mode = mode
        self._layouts = None

    def _vectorized(self, *args, **kwargs):
        with plate(_PARTICLE_PLATE, self.num_particles, dim=-self.max_plate_nesting - 1):
            return self.model(*args, **kwargs)

    def _setup(self, args, kwargs):
        """Lay the latent sites out from one vectorised prior run (which also initialises the particles)."""
        with torch.no_grad(), block():
            prototype = trace(self._vectorized).get_trace(*args, **kwargs)
        layouts, start = {}, 0
        for name, site in prototype.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site.get("intervened"):
                continue
            if site["fn"].support.is_discrete:
                raise ValueError(f"SVGD: sample site '{name}' is discrete; SVGD needs continuous latents")
            value = site["value"]
            particle_dim = value.dim() - site["fn"].event_dim - self.max_plate_nesting - 1
            if particle_dim < 0 or value.shape[particle_dim] != self.num_particles:
                raise ValueError(
                    f"SVGD: sample site '{name}' has value shape {tuple(value.shape)}, which has no particle dim "
                    f"at {-self.max_plate_nesting - 1 - site['fn'].event_dim}; declare its batch dims with "
                    f"plates and give max_plate_nesting (now {self.max_plate_nesting})"
                )
            layout = _Layout(name, site["fn"], value, particle_dim)
            layout.bounds = (start, start + layout.size)
            start += layout.size
            layouts[name] = layout
        if not layouts:
            raise ValueError("SVGD: the model has no latent sample sites")
        self._layouts = layouts
        self._init = torch.cat([layout.init for layout in layouts.values()], dim=-1)

    def _particles(self):
        return param("svgd_particles", self._init)

    def get_named_particles(self):
        """``{site: constrained particle values}``, the particle index first."""
        if self._layouts is None:
            raise RuntimeError("SVGD: call step() first (the particles are made on the first step)")
        particles = self._particles().detach()
        out = {}
        for layout in self._layouts.values():
            start, stop = layout.bounds
            value = layout.transform(layout.unpack(particles[:, start:stop]))
            out[layout.name] = value.movedim(layout.particle_dim, 0).reshape(
                (self.num_particles,) + tuple(value.movedim(layout.particle_dim, 0).shape[1:]))
        return out

    def _log_density(self, args, kwargs):
        """``sum_n log p(x_n)`` (unconstrained, so with the log-Jacobians), and the params it read."""
        with trace(param_only=True) as params:
            particles = self._particles()
            run = _ParticleValues(self._vectorized, self._layouts, particles)
            model_trace = trace(run).get_trace(*args, **kwargs)
        return model_trace.log_prob_sum() + run.log_jacobian, params.trace

    def step(self, *args, **kwargs):
        """One SVGD update of the particles (and one gradient step on the model's params)."""
        if self._layouts is None:
            self._setup(args, kwargs)
        with torch.enable_grad():
            log_density, params = self._log_density(args, kwargs)
            (-log_density).backward()
        leaves = {site["value"].unconstrained() for site in params.nodes.values()
                  if hasattr(site["value"], "unconstrained")}
        particles = self._particles().unconstrained()
        with torch.no_grad():
            grad = particles.grad  # -grad log p at each particle, (N, D)
            log_kernel, kernel_grad = self.kernel.log_kernel_and_grad(particles.detach())
            if self.mode == "multivariate":
                kernel = log_kernel.sum(-1).exp()  # (N, N)
                attractive = kernel @ grad
                repulsive = torch.einsum("nm,nmd->nd", kernel, kernel_grad)
            else:
                kernel = log_kernel.exp()  # (N, N, D)
                attractive = torch.einsum("nmd,md->nd", kernel, grad)
                repulsive = torch.einsum("nmd,nmd->nd", kernel, kernel_grad)
            particles.grad = ((attractive + repulsive) / self.num_particles).contiguous()
            squared = {name: particles.grad[:, slice(*layout.bounds)].pow(2).mean().item()
                       for name, layout in self._layouts.items()}
        self.optim(leaves)
        for leaf in leaves:
            leaf.grad = None
        return squared


__all__ = ["IMQSteinKernel", "RBFSteinKernel", "SVGD", "SteinKernel"]
