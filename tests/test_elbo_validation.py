"""Model/guide validation in the ELBOs: what is refused, what is warned about, and what broadcasts."""

import warnings

import pytest
import torch

import causalppl as cp
from causalppl.infer import Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO, config_enumerate
from causalppl.infer.elbo import check_site_shape
from causalppl.infer.enum_requirements import check_traceenum_requirements


def _warnings_of(fn):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in record]


def test_a_dim_between_plate_dims_may_broadcast_but_not_one_left_of_them():
    def model():
        with cp.plate("particles", 4, dim=-3):
            with cp.plate("cols", 2, dim=-1):
                p = cp.sample("p", cp.dist.Beta(2.0, 2.0))  # (4, 1, 2)
            # dim -2 is declared by no plate, but it lies between declared dims: any size is fine
            cp.sample("obs", cp.dist.Bernoulli(p.expand(4, 5, 2)).to_event(0), obs=torch.ones(4, 5, 2))

    tr = cp.trace(model).get_trace()
    check_site_shape("model", tr.nodes["obs"])
    tr = cp.trace(lambda: cp.sample("x", cp.dist.Normal(torch.zeros(3, 1), 1.0))).get_trace()
    with pytest.raises(ValueError, match="invalid log_prob shape"):
        check_site_shape("model", tr.nodes["x"])


def test_trace_elbo_warns_that_it_samples_sites_marked_for_enumeration():
    def model():
        cp.sample("z", cp.dist.Bernoulli(0.3))

    def guide():
        cp.sample("z", cp.dist.Bernoulli(0.6), infer={"enumerate": "parallel"})

    messages = _warnings_of(lambda: Trace_ELBO().loss(model, guide))
    assert any("['z'] are marked for enumeration" in m for m in messages)
    assert not _warnings_of(lambda: TraceEnum_ELBO(max_plate_nesting=0).loss(model, guide))


def test_mean_field_warns_when_model_and_guide_orders_differ():
    def model():
        x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
        cp.sample("y", cp.dist.Normal(x, 1.0))

    def guide():
        y = cp.sample("y", cp.dist.Normal(0.0, 1.0))
        cp.sample("x", cp.dist.Normal(y, 1.0))

    messages = _warnings_of(lambda: TraceMeanField_ELBO().loss(model, guide))
    assert any("Failed to verify mean field restriction" in m and "['x', 'y']" in m for m in messages)
    assert not _warnings_of(lambda: TraceMeanField_ELBO().loss(model, model))


def test_a_site_after_an_enumerated_site_of_a_deeper_plate_is_warned_about():
    def model():
        with cp.plate("rows", 4):
            x = cp.sample("x", cp.dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        cp.sample("y", cp.dist.Bernoulli(x.float().mean().clamp(0.1, 0.9)))

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        TraceEnum_ELBO(max_plate_nesting=1).loss(model, model)
    message = next(str(w.message) for w in record if issubclass(w.category, RuntimeWarning))
    assert 'at model site "y"' in message and 'precede sites "x"' in message and 'plates "rows"' in message
    with cp.validation_enabled(False):
        assert not [w for w in _warnings_of(lambda: TraceEnum_ELBO(max_plate_nesting=1).loss(model, model))
                    if "possibly invalid dependency" in w]

    def independent():  # iterations of a sequential plate are independent of each other
        for i in cp.plate("seq", 2):
            with cp.plate(f"rows_{i}", 3):
                cp.sample(f"x_{i}", cp.dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
    tr = cp.trace(independent).get_trace()
    assert not _warnings_of(lambda: check_traceenum_requirements(tr, tr))


def test_sequential_enumeration_with_expand_fills_the_batch_shape():
    shapes = {}

    @config_enumerate(default="sequential", expand=True)
    def guide():
        with cp.plate("rows", 3):
            shapes["expanded"] = cp.sample("z", cp.dist.Bernoulli(0.4)).shape

    @config_enumerate(default="sequential")
    def guide_unexpanded():
        with cp.plate("rows", 3):
            shapes["unexpanded"] = cp.sample("z", cp.dist.Bernoulli(0.4)).shape

    def model():
        with cp.plate("rows", 3):
            cp.sample("z", cp.dist.Bernoulli(0.5))

    exact = 3 * float(torch.distributions.kl_divergence(cp.dist.Bernoulli(0.4), cp.dist.Bernoulli(0.5)))
    for g in (guide, guide_unexpanded):
        assert abs(TraceEnum_ELBO(max_plate_nesting=1).loss(model, g) - exact) < 1e-5
    assert shapes == {"expanded": (3,), "unexpanded": (1,)}
