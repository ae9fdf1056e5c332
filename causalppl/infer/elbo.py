"""Evidence lower bounds: the loss SVI minimises.

``Trace_ELBO`` runs the guide, replays its latent values through the model,
and returns ``-(log p(x, z) - log q(z))`` averaged over particles. Gradients
are unbiased for reparameterised sites (pathwise) and for the others (score
function: each plate element's unscaled ``log q(z)`` times the detached,
scaled cost summed down to the site's plates). ``TraceGraph_ELBO`` keeps only
downstream costs and adds baselines; ``TraceMeanField_ELBO`` uses analytic KLs.

>>> import torch, causalppl as cp
>>> def model():
...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
>>> def guide():
...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
>>> cp.infer.Trace_ELBO().loss(model, guide)
0.0
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch

from causalppl.distributions import LinearTerm
from causalppl.handlers import replay, trace
from causalppl.infer.predictive import max_plate_nesting
from causalppl.runtime import is_validation_enabled, plate
from causalppl.trace import contributes_log_prob, log_prob_of


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the site."""


def first_nonfinite_site(*traces):
    """Name and trace role of the first site whose log density is not finite."""
    for role, tr in traces:
        for name, site in tr.nodes.items():
            if contributes_log_prob(site):
                log_prob = site.get("log_prob")
                if log_prob is None:
                    log_prob = log_prob_of(site)
                if not bool(torch.isfinite(log_prob).all()):
                    return f"{role} site '{name}'"
    return None


def _check_match(model_trace, guide_trace, max_plate_nesting=None):
    """Check the structure of a model and guide pair once (Pyro's checks).

    Sites in one and not the other warn; event dims or shapes that disagree,
    and log densities with batch dims no plate declares, raise ``ValueError``.
    """
    if is_validation_enabled():
        check_pair_shapes(model_trace, guide_trace, max_plate_nesting)
    marked = [name for name in guide_trace.stochastic_nodes if guide_trace.nodes[name]["infer"].get("enumerate")]
    if marked:
        warnings.warn(f"guide site(s) {marked} are marked for enumeration, which this ELBO ignores (they are "
                      "sampled); use TraceEnum_ELBO to sum them out", stacklevel=5)
    for name in guide_trace.stochastic_nodes:
        if guide_trace.nodes[name]["infer"].get("is_auxiliary"):
            continue  # e.g. an autoguide's joint latent: the guide's own business
        if name not in model_trace.nodes:
            warnings.warn(f"guide samples site '{name}', which the model does not have", stacklevel=5)
    missing = [name for name in model_trace.stochastic_nodes if name not in guide_trace.nodes]
    if missing:
        message = (f"Found vars in model but not guide: model samples latent site(s) {missing}, which the guide "
                   "does not; they would be drawn from their prior and scored, so the loss is not an ELBO "
                   "(guide them, or hide them with block)")
        refuse_or_warn(message, stacklevel=5)


def check_pair_shapes(model_trace, guide_trace, max_plate_nesting, more_checks=None):
    """Under validation: model and guide shapes agree, every log density's batch dims are declared by
    plates, ``more_checks(model_trace, guide_trace)`` (if given) passes, and the guide has no plate the
    model lacks; each failure a ``ValueError`` naming the site or plate."""
    _check_shapes_agree(model_trace, guide_trace, max_plate_nesting)
    for role, tr in (("model", model_trace), ("guide", guide_trace)):
        for site in tr.nodes.values():
            if contributes_log_prob(site):
                check_site_shape(role, site, max_plate_nesting)
    if more_checks is not None:
        more_checks(model_trace, guide_trace)
    extra_plates = guide_trace.plate_names - model_trace.plate_names
    if extra_plates:
        raise ValueError(f"Found plate statements in guide but not model: {sorted(extra_plates)}; a plate "
                         "that subsamples or scales the guide must scale the model too")


def refuse_or_warn(message, stacklevel):
    """A ``ValueError`` under validation (Pyro's tests run warnings as errors), else a warning."""
    if is_validation_enabled():
        raise ValueError(message)
    warnings.warn(message, stacklevel=stacklevel + 1)


def _event_and_shape(site):
    fn = site["fn"]
    return len(fn.event_shape), fn.batch_shape + fn.event_shape


def _check_shapes_agree(model_trace, guide_trace, max_plate_nesting):
    """Model and guide must agree on each shared latent site's event dims and (broadcast) shape."""
    for name in guide_trace.stochastic_nodes:
        model_site = model_trace.nodes.get(name)
        if model_site is None or not _is_latent(model_site):
            continue
        (model_event, model_shape), (guide_event, guide_shape) = (
            _event_and_shape(model_site), _event_and_shape(guide_trace.nodes[name]))
        if model_event != guide_event:
            raise ValueError(
                f"Model and guide event_dims disagree at site '{name}': {model_event} in the model "
                f"(shape {tuple(model_shape)}), {guide_event} in the guide (shape {tuple(guide_shape)}); "
                "use .to_event(n) on one of them"
            )
        worlds = model_site["infer"].get("_worlds")
        if worlds is not None:  # twin_world/multi_world: the guide proposes the factual world only
            position = worlds.dim - model_event
            if len(model_shape) >= -position:
                model_shape = list(model_shape)
                model_shape[position] = 1
                model_shape = torch.Size(model_shape)
        if max_plate_nesting is not None:  # dims left of the plates may broadcast
            keep = max_plate_nesting + model_event
            model_shape, guide_shape = model_shape[-keep:] if keep else (), guide_shape[-keep:] if keep else ()
        width = max(len(model_shape), len(guide_shape))
        padded = [(1,) * (width - len(s)) + tuple(s) for s in (model_shape, guide_shape)]
        if padded[0] != padded[1]:
            raise ValueError(
                f"Model and guide shapes disagree at site '{name}': {tuple(model_shape)} in the model, "
                f"{tuple(guide_shape)} in the guide"
            )


def check_site_shape(role, site, max_plate_nesting=None):
    """Pyro's rule: each log density dim is its plate's size, or 1 where no plate declares it.

    Dims left of ``max_plate_nesting`` are not checked; a plate without a size
    (``plate(name)``) allows any size at its dim.

    >>> import torch, causalppl as cp
    >>> tr = cp.trace(lambda: cp.sample("x", cp.dist.Normal(torch.zeros(3), 1.0))).get_trace()
    >>> try:
    ...     check_site_shape("model", tr.nodes["x"])
    ... except ValueError as err:
    ...     print(str(err).split(";")[0])
    model site 'x': invalid log_prob shape (3,), with size 3 at dim -1, which no plate declares
    """
    shape = tuple(log_prob_of(site).shape)
    declared = {frame.dim: frame for frame in plate_frames(site)}
    deepest = max((-dim for dim in declared), default=0)
    width = max(len(shape), deepest)
    padded = (1,) * (width - len(shape)) + shape
    for dim in range(-width, 0):
        if max_plate_nesting is not None and -dim > max_plate_nesting:
            continue
        frame = declared.get(dim)
        if frame is None and -dim < deepest:
            continue  # a dim between declared plate dims may broadcast (Pyro's rule)
        expected = 1 if frame is None else frame.subsample_size
        if expected == -1 or padded[dim] == expected:
            continue
        where = "which no plate declares" if frame is None else \
            f"where plate '{frame.name}' has size {expected}"
        raise ValueError(
            f"{role} site '{site['name']}': invalid log_prob shape {shape}, with size {padded[dim]} at dim {dim}, "
            f"{where}; enclose the batched site in cp.plate(...) or make those dims event dims with .to_event(...)"
        )


class ELBO:
    """Shared machinery: running model and guide, particles, the float losses.

    The keywords are Pyro's. ``max_plate_nesting`` (``max_iarange_nesting`` is
    its old name) bounds the plate dims, so vectorised particles go to its
    left; by default it is found from a first run. ``retain_graph`` is passed
    to ``backward``. ``strict_enumeration_warning`` and ``ignore_jit_warnings``
    are accepted for Pyro scripts and change nothing here; ``jit_options``
    matters to the ``JitTrace*_ELBO`` classes only (see :mod:`causalppl.infer.jit`).
    """

    def __init__(self, num_particles=1, max_plate_nesting=None, max_iarange_nesting=None,
                 vectorize_particles=False, strict_enumeration_warning=True, ignore_jit_warnings=False,
                 jit_options=None, retain_graph=None):
        if int(num_particles) < 1:
            raise ValueError(f"num_particles must be at least 1, got {num_particles}")
        if max_iarange_nesting is not None:
            max_plate_nesting = max_iarange_nesting
        if max_plate_nesting is not None and max_plate_nesting == float("inf"):
            max_plate_nesting = None  # Pyro's default: "not given"
        self.num_particles = int(num_particles)
        self.vectorize_particles = vectorize_particles
        self.max_plate_nesting = None if max_plate_nesting is None else int(max_plate_nesting)
        self.retain_graph = retain_graph
        self.strict_enumeration_warning = strict_enumeration_warning
        self.last_traces = None
        self._checked = False

    # -- running model and guide -------------------------------------------

    def _run(self, model, guide, args, kwargs):
        guide_trace = trace(guide).get_trace(*args, **kwargs)
        model_trace = trace(replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        if not self._checked:  # the structure is checked once, on the first run
            _check_match(model_trace, guide_trace, self.max_plate_nesting)
            self._checked = True
        self.last_traces = (("model", model_trace), ("guide", guide_trace))
        return model_trace, guide_trace

    def _guess_max_plate_nesting(self, model, guide, args, kwargs):
        with torch.no_grad():
            model_trace, guide_trace = self._run(model, guide, args, kwargs)
        return max_plate_nesting(model_trace, guide_trace)

    def _particle_traces(self, model, guide, args, kwargs):
        """Yield (model_trace, guide_trace, particle_dim or None) per particle batch."""
        if self.num_particles == 1:
            yield (*self._run(model, guide, args, kwargs), None)
        elif self.vectorize_particles:
            if self.max_plate_nesting is None:
                self.max_plate_nesting = self._guess_max_plate_nesting(model, guide, args, kwargs)
            dim = -(self.max_plate_nesting + 1)
            particles = plate("num_particles_vectorized", self.num_particles, dim=dim)
            yield (*self._run(particles(model), particles(guide), args, kwargs), dim)
        else:
            for _ in range(self.num_particles):
                yield (*self._run(model, guide, args, kwargs), None)

    # -- public losses -------------------------------------------------------

    def __call__(self, model, guide, *args, **kwargs):
        """The loss as a float, so ``svi.loss(model, guide, *args)`` works as in Pyro (whose ``svi.loss``
        is the ELBO's ``loss`` method); ``elbo(model, guide)`` with two ``nn.Module`` s and nothing else
        is Pyro's :class:`ELBOModule` (the differentiable loss as an ``nn.Module``)."""
        if not args and not kwargs and isinstance(model, torch.nn.Module) and isinstance(guide, torch.nn.Module):
            return ELBOModule(model, guide, self)
        return self.loss(model, guide, *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The loss as a tensor whose gradient is the ELBO's (a surrogate)."""
        loss = None
        for model_trace, guide_trace, particle_dim in self._particle_traces(model, guide, args, kwargs):
            surrogate, _ = self._particle_loss(model_trace, guide_trace, particle_dim)
            loss = _add(loss, surrogate)
        if self.num_particles > 1 and not self.vectorize_particles:
            loss = loss / self.num_particles
        return torch.as_tensor(0.0 if loss is None else loss)

    def loss(self, model, guide, *args, **kwargs):
        """The loss (negative ELBO estimate) as a float, without gradients."""
        with torch.no_grad():
            total = 0.0
            for model_trace, guide_trace, particle_dim in self._particle_traces(model, guide, args, kwargs):
                total = total + self._particle_loss(model_trace, guide_trace, particle_dim)[1]
            if self.num_particles > 1 and not self.vectorize_particles:
                total = total / self.num_particles
        return float(total)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """Backpropagate the surrogate loss and return the loss as a float."""
        total = None
        for model_trace, guide_trace, particle_dim in self._particle_traces(model, guide, args, kwargs):
            surrogate, loss = self._particle_loss(model_trace, guide_trace, particle_dim)
            if self.num_particles > 1 and not self.vectorize_particles:
                surrogate, loss = surrogate / self.num_particles, loss / self.num_particles
            if surrogate.requires_grad:
                surrogate.backward(retain_graph=self.retain_graph)
            total = loss if total is None else total + loss
        return total.item()

    def _particle_loss(self, model_trace, guide_trace, particle_dim):
        """(surrogate loss tensor, loss tensor) for one (batch of) particle(s)."""
        raise NotImplementedError


def _add(total, term):
    return term if total is None else total + term


def _site_term(site, particle_dim, log_prob=None):
    """A site's scaled, masked log density summed over all but the particle dim.

    A scalar scale (plate subsampling) multiplies the sum, not every entry.
    """
    if log_prob is None:
        log_prob = log_prob_of(site, scaled=False)
    scale = site["scale"]
    if isinstance(scale, torch.Tensor) and scale.dim() > 0:
        return _per_particle(log_prob * scale, particle_dim)
    log_prob = _per_particle(log_prob, particle_dim)
    return log_prob if isinstance(scale, float) and scale == 1.0 else log_prob * scale


def _log_prob_of_own_draw(site):
    """A guide site's unscaled log density read off its draw's noise (a Normal's rsample), or None.

    The same value and the same gradients as ``log_prob_of`` for the ELBO
    (see ``Normal._log_prob_of_draw``), with fewer ops; None when the site is
    masked or its value is not the distribution's own last draw.
    """
    if site["mask"] is not None:
        return None
    of_draw = getattr(site["fn"], "_log_prob_of_draw", None)
    return None if of_draw is None else of_draw(site["value"])


def _summed_site_term(site, own_draw=False):
    """A site's scaled, masked log density summed over every entry.

    A number, a 0-dim tensor, a :class:`~causalppl.distributions.LinearTerm`
    or a tuple of them, as the site's distribution's summed shortcut gives it
    (``_summed_log_prob``, or for a guide site at its own draw
    ``_summed_log_prob_of_draw``: see ``Normal``); else ``log_prob`` summed.
    """
    scale = site["scale"]
    if site["mask"] is None and not (isinstance(scale, torch.Tensor) and scale.dim() > 0):
        fn = site["fn"]
        while isinstance(fn, torch.distributions.Independent) and not fn._validate_args:
            fn = fn.base_dist  # the sum over event dims is the same sum
        shortcut = getattr(fn, "_summed_log_prob_of_draw" if own_draw else "_summed_log_prob", None)
        total = None if shortcut is None else shortcut(site["value"])
        if total is not None:
            return total if isinstance(scale, float) and scale == 1.0 else _scaled_term(total, scale)
    return _site_term(site, None, _log_prob_of_own_draw(site) if own_draw else None)


def _scaled_term(term, scale):
    if isinstance(term, tuple) and not isinstance(term, LinearTerm):
        return tuple(_scaled_term(part, scale) for part in term)
    if isinstance(term, LinearTerm):
        if isinstance(scale, (int, float)):
            return LinearTerm(term.value, term.coefficient * scale, term.constant * scale)
        term = term.value * term.coefficient + term.constant
    return term * scale


def _loss_of_terms(log_q, log_p):
    """``sum(log_q) - sum(log_p)`` from summed site terms (see ``_summed_site_term``).

    The numbers are added in one Python float, added last. The tensors, each
    with its coefficient (``±1`` times a :class:`LinearTerm` 's), are summed
    as one ``dot(stack(values), coefficients)`` when there are several 0-dim
    ones (two ops, forward and backward, whatever the number of sites), else
    in one chain of ``add(total, value, alpha=coefficient)``.
    """
    values, coefficients, constant = [], [], 0.0
    pending = [(1.0, term) for term in log_q] + [(-1.0, term) for term in log_p]
    while pending:
        sign, term = pending.pop()
        if isinstance(term, tuple) and not isinstance(term, LinearTerm):
            pending.extend((sign, part) for part in term)
        elif isinstance(term, LinearTerm):
            values.append(term.value)
            coefficients.append(sign * term.coefficient)
            constant += sign * term.constant
        elif isinstance(term, torch.Tensor):
            values.append(term)
            coefficients.append(sign)
        else:
            constant += sign * term
    if not values:
        return torch.tensor(constant)
    first = values[0]
    if len(values) >= _MIN_STACKED and all(
            value.dim() == 0 and value.dtype == first.dtype and value.device == first.device for value in values):
        total = torch.dot(torch.stack(values), _coefficients(tuple(coefficients), first.dtype, first.device))
    else:
        total = first if coefficients[0] == 1.0 else first * coefficients[0]
        for value, coefficient in zip(values[1:], coefficients[1:]):
            total = torch.add(total, value, alpha=coefficient)
    return total + constant if constant else total


_MIN_STACKED = 4  # 0-dim terms before one stack and one dot beat a chain of adds
_COEFFICIENTS = {}  # (coefficients, dtype, device) -> their tensor: the same sites give the same ones each step


def _coefficients(numbers, dtype, device):
    if torch._C._len_torch_dispatch_stack() or torch.compiler.is_compiling():
        return torch.tensor(numbers, dtype=dtype, device=device)  # traced: a constant of the graph, not cached
    key = (numbers, dtype, device)
    found = _COEFFICIENTS.get(key)
    if found is None:
        if len(_COEFFICIENTS) >= 256:  # programs whose coefficients change (a subsample scale per step)
            _COEFFICIENTS.clear()
        with torch.inference_mode(False):  # a tensor that backward may save, even if made in inference mode
            found = _COEFFICIENTS[key] = torch.tensor(numbers, dtype=dtype, device=device)
    return found


def _per_particle(log_prob, particle_dim):
    """Sum a site's log density over everything but the particle dim."""
    if particle_dim is None:
        return log_prob if log_prob.dim() == 0 else log_prob.sum()
    keep = log_prob.dim() + particle_dim  # index of the particle dim, if present
    if keep < 0:
        return log_prob.sum()  # the site does not vary across particles
    return log_prob.sum(tuple(range(keep + 1, log_prob.dim()))) if keep + 1 < log_prob.dim() else log_prob


class ELBOModule(torch.nn.Module):
    """``elbo(model, guide)`` for module model and guide: ``module(*args)`` is the differentiable loss, and
    ``module.parameters()`` are the model's and guide's (``model.*``, ``guide.*``), for a plain torch optimiser.

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> model = cp.nn.PyroModule[torch.nn.Linear](1, 1)
    >>> guide = cp.infer.autoguide.AutoNormal(model)
    >>> loss = cp.infer.Trace_ELBO()(model, guide)
    >>> isinstance(loss(torch.ones(1)), torch.Tensor)
    True
    """

    def __init__(self, model, guide, elbo):
        super().__init__()
        self.model = model
        self.guide = guide
        self.elbo = elbo

    def forward(self, *args, **kwargs):
        return self.elbo.differentiable_loss(self.model, self.guide, *args, **kwargs)


class Trace_ELBO(ELBO):
    """The standard ELBO estimator (Pyro's ``Trace_ELBO``).

    ``num_particles`` samples are averaged; with ``vectorize_particles=True``
    they are drawn in one pass along a leading batch dimension.

    Latent guide sites that cannot be reparameterised (e.g. ``Bernoulli``) get
    score-function gradients: each plate element's ``log q`` (unscaled) is
    weighted by the cost -- every ELBO term, scaled, summed down to the site's
    plates -- so terms at other elements of the same plate do not add noise.

    >>> import torch, causalppl as cp
    >>> def model():
    ...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
    >>> def guide():
    ...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
    >>> cp.infer.Trace_ELBO(num_particles=10, vectorize_particles=True).loss(model, guide)
    0.0
    """

    def _particle_loss(self, model_trace, guide_trace, particle_dim):
        if _has_score_sites(guide_trace):
            return self._loss_from_terms(_elbo_terms(model_trace, guide_trace), model_trace, guide_trace,
                                         particle_dim)
        # Every latent is reparameterised: the ELBO itself is the surrogate.
        # This is the hot path of SVI: each site's density is summed the
        # cheapest way its distribution knows, and log q - log p is one chain
        # of adds.
        if particle_dim is None:
            log_p = [_summed_site_term(site) for site in model_trace.nodes.values() if contributes_log_prob(site)]
            log_q = [_summed_site_term(site, own_draw=True) for site in guide_trace.nodes.values()
                     if _is_latent(site)]
            loss = _loss_of_terms(log_q, log_p)
            return loss, loss.detach()
        log_p = log_q = None
        for site in model_trace.nodes.values():
            if contributes_log_prob(site):
                log_p = _add(log_p, _site_term(site, particle_dim))
        for site in guide_trace.nodes.values():
            if _is_latent(site):
                log_q = _add(log_q, _site_term(site, particle_dim, _log_prob_of_own_draw(site)))
        elbo = log_p if log_q is None else -log_q if log_p is None else log_p - log_q
        return _surrogate_and_loss(elbo, None, particle_dim)

    def _loss_from_terms(self, terms, model_trace, guide_trace, particle_dim):
        """(surrogate, loss) from the ELBO's terms, with a score term per non-reparameterised site."""
        elbo = None  # differentiable through reparameterised sites only
        for term in terms:
            value = term.value if term.pathwise else term.value.detach()
            elbo = _add(elbo, _site_term(term.site, particle_dim, value))
        score_names = [name for name, site in guide_trace.nodes.items() if _is_score_site(site)]
        if not score_names or not torch.is_grad_enabled():
            return _surrogate_and_loss(elbo, None, particle_dim)
        costs = self._downstream_costs(terms, model_trace, guide_trace, score_names)
        weighted = baseline_loss = None
        for name in score_names:
            site = guide_trace.nodes[name]
            weight, loss = self._baseline(name, site, costs[name])
            weighted = _add(weighted, _per_particle(_score(site) * weight, particle_dim))
            if loss is not None:
                baseline_loss = _add(baseline_loss, _per_particle(loss, particle_dim))
        return _surrogate_and_loss(elbo, weighted, particle_dim, baseline_loss)

    def _downstream_costs(self, terms, model_trace, guide_trace, score_names):
        """Site name -> the cost weighting its score: all terms, summed to its plates."""
        groups = _group_by_plates(terms)
        by_plates = {}
        costs = {}
        for name in score_names:
            target = plate_frames(guide_trace.nodes[name])
            if target not in by_plates:
                by_plates[target] = _sum_groups_to(groups, target)
            costs[name] = by_plates[target]
        return costs

    def _baseline(self, name, site, cost):
        """(weight for the score, baseline loss or None); Trace_ELBO uses no baselines."""
        return cost, None


class TraceMeanField_ELBO(Trace_ELBO):
    """``Trace_ELBO`` that uses the analytic KL divergence wherever torch has one.

    For each latent site, if ``torch.distributions.kl.kl_divergence(q, p)`` is
    registered for the guide's and the model's distributions, the sampled term
    ``log p(z) - log q(z)`` is replaced by ``-KL(q || p)``; otherwise the
    sampled term is kept. The expectation is the same (so is the ELBO), the
    variance is lower. The KL is evaluated at the model's distribution *given
    the sampled upstream values*, which is exact for any guide in which each
    site's ``q`` does not depend on downstream samples (e.g. mean-field guides).

    >>> import torch, causalppl as cp
    >>> def model():
    ...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
    >>> def guide():
    ...     cp.sample("z", cp.dist.Normal(1.0, 1.0))
    >>> cp.infer.TraceMeanField_ELBO().loss(model, guide)  # KL(N(1,1) || N(0,1))
    0.5
    """

    def _run(self, model, guide, args, kwargs):
        checked = self._checked
        model_trace, guide_trace = super()._run(model, guide, args, kwargs)
        if not checked and is_validation_enabled():
            _check_mean_field_order(model_trace, guide_trace)
        return model_trace, guide_trace

    def _particle_loss(self, model_trace, guide_trace, particle_dim):
        return self._loss_from_terms(self._mean_field_terms(model_trace, guide_trace), model_trace,
                                     guide_trace, particle_dim)

    @staticmethod
    def _mean_field_terms(model_trace, guide_trace):
        """The ELBO's terms, with ``-KL(q || p)`` in place of ``log p - log q`` where torch has it."""
        analytic = {}
        for name, site in guide_trace.nodes.items():
            model_site = model_trace.nodes.get(name)
            if _is_latent(site) and model_site is not None and _is_latent(model_site):
                kl = _analytic_kl(site, model_site)
                if kl is not None:
                    analytic[name] = kl
        terms = [term for term in _elbo_terms(model_trace, guide_trace) if term.name not in analytic]
        # A non-reparameterised site with an analytic KL keeps its score term
        # (downstream sites still saw its sample); the KL itself is pathwise.
        terms += [ElboTerm(name, "guide", guide_trace.nodes[name], -kl) for name, kl in analytic.items()]
        return terms


def _check_mean_field_order(model_trace, guide_trace):
    """Warn when the latents shared by model and guide are sampled in different orders.

    The analytic KL of a site is taken at the model's distribution given the
    sampled upstream values, which is exact only if no guide site depends on
    a site sampled after it in the model; the same order is the simple check.
    """
    model_order = [n for n in model_trace.stochastic_nodes if n in guide_trace.nodes]
    guide_order = [n for n in guide_trace.stochastic_nodes if n in model_trace.nodes]
    if model_order != guide_order:
        warnings.warn(
            "Failed to verify mean field restriction on the guide: the model samples "
            f"{model_order} and the guide {guide_order}; TraceMeanField_ELBO's analytic KLs assume each guide "
            "site depends only on sites before it in the model (sample them in the same order)",
            stacklevel=6)


class TraceGraph_ELBO(Trace_ELBO):
    """``Trace_ELBO`` whose score terms see only downstream costs, with optional baselines.

    A non-reparameterised guide site ``z`` is weighted by the cost terms that
    can depend on it. The dependency structure is taken, as in Pyro's
    ``TraceGraph_ELBO``, from the order of the traces plus their plates:

    - guide terms of ``z`` and of every guide latent sampled after it;
    - model terms of every model site from the first of those sites in the
      model's order on (a model site cannot depend on values sampled after it);
    - summed down to ``z``'s plates, as in :class:`Trace_ELBO`.

    (Iterations of a sequential ``for i in plate(...)`` are not told apart:
    that keeps more terms than needed, never fewer.)

    Baselines reduce the variance further; set them per site with
    ``infer={"baseline": {...}}``:

    - ``"use_decaying_avg_baseline": True`` (and ``"baseline_beta"``, 0.9 by
      default): subtract a running average of the site's cost, kept by this
      ELBO object per site name;
    - ``"nn_baseline": module, "nn_baseline_input": tensor``: subtract
      ``module(input)``, trained by adding its squared error to the cost to the
      surrogate loss (register the module with ``cp.module`` in the guide so
      SVI updates it); or ``"baseline_value": tensor``, trained the same way.

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> def model():
    ...     z = cp.sample("z", cp.dist.Bernoulli(0.3))
    ...     cp.sample("x", cp.dist.Normal(3.0 * z, 1.0), obs=torch.tensor(1.0))
    >>> def guide():
    ...     p = cp.param("p", torch.tensor(0.5), constraint=cp.constraints.unit_interval)
    ...     cp.sample("z", cp.dist.Bernoulli(p), infer={"baseline": {"use_decaying_avg_baseline": True}})
    >>> elbo = cp.infer.TraceGraph_ELBO(num_particles=100, vectorize_particles=True)
    >>> loss = elbo.differentiable_loss(model, guide)
    >>> loss.requires_grad, 1.0 < loss.item() < 3.0
    (True, True)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._averages = {}  # site name -> decaying average of its downstream cost

    def _downstream_costs(self, terms, model_trace, guide_trace, score_names):
        guide_order = [name for name, site in guide_trace.nodes.items() if _is_latent(site)]
        model_order = {name: index for index, name in
                       enumerate(name for name, site in model_trace.nodes.items() if contributes_log_prob(site))}
        costs = {}
        for name in score_names:
            picked = downstream_terms(terms, name, guide_order, model_order)
            costs[name] = _sum_groups_to(_group_by_plates(picked), plate_frames(guide_trace.nodes[name]))
        return costs

    def _baseline(self, name, site, cost):
        options = site["infer"].get("baseline")
        if not options:
            return cost, None
        _check_baseline_options(name, options)
        baseline = None
        if options.get("use_decaying_avg_baseline", False):
            baseline = self._decaying_average(name, cost, options.get("baseline_beta", 0.9))
        learned = _learned_baseline(name, options, cost)
        if learned is None:
            return (cost if baseline is None else cost - baseline), None
        baseline = learned if baseline is None else baseline + learned
        # The baseline learns from its own squared error only; the score sees it as a constant.
        return cost - baseline.detach(), (cost - baseline).pow(2)

    def _decaying_average(self, name, cost, beta):
        """The running average of ``name``'s cost before this step (then updated with it).

        Using the *previous* average keeps the baseline independent of the
        current sample, so the gradient stays unbiased.
        """
        beta = float(beta)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"sample site '{name}': baseline_beta must be in [0, 1), got {beta}")
        old = self._averages.get(name)
        if old is None or old.shape != cost.shape:
            old = torch.zeros_like(cost)
        self._averages[name] = beta * old + (1.0 - beta) * cost
        return old


_BASELINE_KEYS = ("use_decaying_avg_baseline", "baseline_beta", "nn_baseline", "nn_baseline_input",
                  "baseline_value")


def _check_baseline_options(name, options):
    unknown = [key for key in options if key not in _BASELINE_KEYS]
    if unknown:
        raise ValueError(
            f"sample site '{name}': unknown baseline option(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(_BASELINE_KEYS)})"
        )
    if "nn_baseline" in options and "baseline_value" in options:
        raise ValueError(f"sample site '{name}': give nn_baseline or baseline_value, not both")
    if "nn_baseline" in options and "nn_baseline_input" not in options:
        raise ValueError(f"sample site '{name}': nn_baseline needs nn_baseline_input")


def _learned_baseline(name, options, cost):
    """The site's trainable baseline (an nn module's output or a given tensor), or None."""
    if "nn_baseline" in options:
        given = options["nn_baseline_input"]
        given = tuple(x.detach() for x in given) if isinstance(given, (tuple, list)) else given.detach()
        value = options["nn_baseline"](given)
    elif "baseline_value" in options:
        value = torch.as_tensor(options["baseline_value"])
    else:
        return None
    while value.dim() > cost.dim() and value.shape[0] == 1:
        value = value.squeeze(0)  # e.g. Linear(1, 1) gives shape (1,) for a scalar cost
    if torch.broadcast_shapes(value.shape, cost.shape) != cost.shape:
        raise ValueError(
            f"sample site '{name}': the baseline has shape {tuple(value.shape)}, but the site's "
            f"downstream cost has shape {tuple(cost.shape)} (one entry per plate element)"
        )
    return value


def _analytic_kl(guide_site, model_site):
    """KL(q || p) of one site, masked like its log density (unscaled); None if unknown."""
    try:
        kl = torch.distributions.kl.kl_divergence(guide_site["fn"], model_site["fn"])
    except NotImplementedError:
        return None
    mask = guide_site["mask"]
    if mask is not None:
        kl = torch.where(mask, kl, kl.new_zeros(()))
    return kl


# ---------------------------------------------------------------------------
# Score-function terms
# ---------------------------------------------------------------------------
#
# For a latent z drawn without reparameterisation, d/dtheta E_q[f] is
# E_q[d log q(z) / dtheta * f]. Two things keep that estimate right and its
# variance small:
#   * the score is log q(z) *unscaled*: the site's scale (plate subsampling, the
#     scale handler) is already inside the cost, and must count once;
#   * element i of a plate cannot change a term at element k != i of the same
#     plate, so element i's score is weighted by the cost summed down to the
#     site's plates, not by the whole ELBO (Pyro's Trace_ELBO rule).


class ElboTerm(NamedTuple):
    """One site's contribution to the ELBO, kept per plate element.

    ``value`` is masked and unscaled: ``log p`` for a model site, ``-log q``
    (or ``-KL``) for a guide site. ``pathwise`` is False for the sampled
    ``-log q`` of a non-reparameterised site, whose gradient the score carries.
    """

    name: str
    role: str
    site: dict
    value: torch.Tensor
    pathwise: bool = True


def _is_latent(site):
    return contributes_log_prob(site) and not site["is_observed"]


def _is_score_site(site):
    """A latent guide site drawn without reparameterisation (its gradient needs a score term)."""
    return _is_latent(site) and not site["fn"].has_rsample


def _has_score_sites(guide_trace):
    return any(_is_score_site(site) for site in guide_trace.nodes.values())


def _elbo_terms(model_trace, guide_trace):
    """``log p`` of every model site, then ``-log q`` of every latent guide site."""
    terms = [ElboTerm(name, "model", site, log_prob_of(site, scaled=False))
             for name, site in model_trace.nodes.items() if contributes_log_prob(site)]
    terms += [ElboTerm(name, "guide", site, -log_prob_of(site, scaled=False), site["fn"].has_rsample)
              for name, site in guide_trace.nodes.items() if _is_latent(site)]
    return terms


def _score(site):
    """``log q(z)`` of a score site: unscaled (its cost is scaled) and unmasked (as in Pyro).

    A masked element's own term drops out of the cost, but terms downstream of
    its sample may not, so its score still counts.
    """
    return site["fn"].log_prob(site["value"])


def plate_frames(site):
    """The vectorised plates a site lives in (sequential plates broadcast nothing)."""
    return frozenset(frame for frame in site["cond_indep_stack"] if frame.dim is not None)


def sum_to_plates(value, frames, target):
    """Sum ``value`` (living in plates ``frames``) down to the plates in ``target``.

    Dims of plates in ``frames`` but not in ``target`` are summed, and so are
    dims no plate declares; leading singleton dims are dropped, so the result
    broadcasts against a tensor with ``target``'s plates at their dims.

    >>> import torch
    >>> from causalppl.runtime import CondIndepStackFrame as Frame
    >>> rows, cols = Frame("rows", -2, 3, 3), Frame("cols", -1, 2, 2)
    >>> sum_to_plates(torch.ones(3, 2), {rows, cols}, {rows})
    tensor([[2.],
            [2.],
            [2.]])
    >>> sum_to_plates(torch.ones(3, 2), {rows, cols}, set())
    tensor(6.)
    """
    keep = {frame.dim for frame in frames if frame in target}
    drop = tuple(d for d in range(-value.dim(), 0) if d not in keep and value.shape[d] != 1)
    if drop:
        value = value.sum(drop, keepdim=True)
    while value.dim() and value.shape[0] == 1:
        value = value.squeeze(0)
    return value


def _scaled_cost(term):
    """A term's value times its site's scale, detached: what a score is weighted by."""
    value = term.value.detach()
    scale = term.site["scale"]
    if isinstance(scale, float) and scale == 1.0:
        return value
    return value * (scale.detach() if isinstance(scale, torch.Tensor) else scale)


def _group_by_plates(terms):
    """Plates -> the sum of the scaled costs of the terms that live in exactly those plates."""
    groups = {}
    for term in terms:
        frames = plate_frames(term.site)
        value = sum_to_plates(_scaled_cost(term), frames, frames)
        groups[frames] = value if frames not in groups else groups[frames] + value
    return groups


def _sum_groups_to(groups, target):
    """The total cost seen from plates ``target``: every group summed down to them."""
    total = None
    for frames, value in groups.items():
        total = _add(total, sum_to_plates(value, frames, target))
    return torch.zeros(()) if total is None else total


def downstream_terms(terms, name, guide_order, model_order):
    """The ELBO terms that may depend on guide site ``name`` (TraceGraph_ELBO's rule).

    ``guide_order`` lists the guide's latent sites in sampling order;
    ``model_order`` maps each scored model site to its position. Kept: guide
    terms of ``name`` and every later guide latent; model terms from the first
    of those in the model's order on.

    >>> from types import SimpleNamespace as T
    >>> terms = [T(name="a", role="model"), T(name="z", role="model"), T(name="x", role="model"),
    ...          T(name="a", role="guide"), T(name="z", role="guide")]
    >>> [(t.role, t.name) for t in downstream_terms(terms, "z", ["a", "z"], {"a": 0, "z": 1, "x": 2})]
    [('model', 'z'), ('model', 'x'), ('guide', 'z')]
    """
    later = set(guide_order[guide_order.index(name):])
    first = min((model_order[n] for n in later if n in model_order), default=len(model_order))
    return [term for term in terms
            if (term.name in later if term.role == "guide" else model_order[term.name] >= first)]


def _surrogate_and_loss(elbo, weighted_score, particle_dim, baseline_loss=None):
    """(surrogate loss, loss): the surrogate's gradient is the ELBO's, its value the loss.

    ``weighted_score`` is the sum of score x cost terms (None without score
    sites); ``baseline_loss`` trains learned baselines. Both enter the
    surrogate as ``x - x.detach()``: gradient, no value.
    """
    elbo = torch.zeros(()) if elbo is None else elbo
    if particle_dim is not None:
        elbo = elbo.mean()
    loss = -elbo
    if weighted_score is None:
        return loss, loss.detach()
    if particle_dim is not None:
        weighted_score = weighted_score.mean()
    surrogate = loss - (weighted_score - weighted_score.detach())
    if baseline_loss is not None:
        if particle_dim is not None:
            baseline_loss = baseline_loss.mean()
        surrogate = surrogate + (baseline_loss - baseline_loss.detach())
    return surrogate, loss.detach()
