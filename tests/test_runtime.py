"""Tests for causalppl.runtime: the handler stack, primitives and plate."""

import math

import pytest
import torch

import causalppl as cp
from causalppl import runtime
from causalppl.handlers import replay, trace


def normal_logpdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)


# --- primitives ---------------------------------------------------------------------------


def test_sample_draws_and_records_a_site():
    cp.set_rng_seed(0)

    def model():
        return cp.sample("x", cp.dist.Normal(0.0, 1.0))

    tr = trace(model).get_trace()
    site = tr.nodes["x"]
    assert site["type"] == "sample" and site["name"] == "x"
    assert isinstance(site["fn"], cp.dist.Normal)
    assert site["value"].shape == () and not site["is_observed"]


def test_sample_with_obs_returns_obs_as_a_tensor():
    with pytest.warns(RuntimeWarning, match="observe a value outside of inference at x"):
        value = cp.sample("x", cp.dist.Normal(0.0, 1.0), obs=0.5)  # no handler: nothing records it
    assert isinstance(value, torch.Tensor) and value.item() == 0.5
    tr = trace(lambda: cp.sample("x", cp.dist.Normal(0.0, 1.0), obs=0.5)).get_trace()
    assert tr.nodes["x"]["is_observed"]
    assert tr.log_prob_sum().item() == pytest.approx(normal_logpdf(0.5, 0.0, 1.0), abs=1e-6)


def test_reparameterised_sample_carries_gradients():
    cp.set_rng_seed(1)
    loc = torch.tensor(0.3, requires_grad=True)
    x = cp.sample("x", cp.dist.Normal(loc, 1.0))
    x.backward()
    assert loc.grad.item() == pytest.approx(1.0)


def test_param_primitive_creates_then_reuses():
    a = cp.param("a", torch.tensor(2.0))
    assert a.item() == 2.0
    assert cp.param("a", torch.tensor(5.0)).item() == 2.0  # init ignored on later calls
    tr = trace(lambda: cp.param("a")).get_trace()
    assert tr.nodes["a"]["type"] == "param" and tr.nodes["a"]["value"].item() == 2.0


def test_factor_adds_its_log_factor_to_the_joint():
    def model():
        cp.sample("x", cp.dist.Normal(0.0, 1.0), obs=1.0)
        cp.factor("penalty", torch.tensor(-3.5))

    tr = trace(model).get_trace()
    assert tr.nodes["penalty"]["type"] == "sample" and tr.nodes["penalty"]["is_observed"]
    assert tr.log_prob_sum().item() == pytest.approx(normal_logpdf(1.0, 0.0, 1.0) - 3.5, abs=1e-6)


def test_deterministic_is_recorded_without_log_density():
    cp.set_rng_seed(2)

    def model():
        x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
        return cp.deterministic("double", 2 * x)

    tr = trace(model).get_trace()
    assert torch.equal(tr.nodes["double"]["value"], 2 * tr.nodes["x"]["value"])
    assert "double" not in tr.stochastic_nodes and "double" not in tr.observation_nodes
    x = tr.nodes["x"]["value"].item()
    assert tr.log_prob_sum().item() == pytest.approx(normal_logpdf(x, 0.0, 1.0), abs=1e-5)
    assert cp.deterministic("d", 3.0).item() == 3.0  # no handlers: just the value


def test_fast_path_without_handlers_skips_the_stack(monkeypatch):
    cp.set_rng_seed(3)

    def fail(msg):
        raise AssertionError(f"apply_stack called for {msg['name']}")

    monkeypatch.setattr(runtime, "apply_stack", fail)
    assert not runtime.HANDLER_STACK
    x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
    assert x.shape == ()
    with pytest.warns(RuntimeWarning, match="outside of inference"):
        assert cp.sample("y", cp.dist.Normal(0.0, 1.0), obs=torch.tensor(1.5)).item() == 1.5
    assert cp.param("p", torch.tensor(0.25)).item() == 0.25
    with pytest.raises(AssertionError, match="apply_stack called for z"):
        with trace():
            cp.sample("z", cp.dist.Normal(0.0, 1.0))


def test_duplicate_sample_names_raise_value_error_naming_the_site():
    def model():
        cp.sample("dup", cp.dist.Normal(0.0, 1.0))
        cp.sample("dup", cp.dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="'dup'"):
        trace(model).get_trace()


def test_sample_with_a_non_distribution_raises_type_error_naming_the_site():
    with pytest.raises(TypeError, match="'w'.*Distribution"):
        cp.sample("w", 3.0)
    with pytest.raises(TypeError, match="'w'"):
        with trace():
            cp.sample("w", torch.tensor(1.0))


# --- plate --------------------------------------------------------------------------------


def test_plate_broadcasts_a_scalar_distribution():
    cp.set_rng_seed(4)
    with trace() as tr:
        with cp.plate("data", 5) as idx:
            x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
    assert x.shape == (5,)
    assert idx.tolist() == [0, 1, 2, 3, 4]
    site = tr.trace.nodes["x"]
    assert site["fn"].batch_shape == (5,)
    (frame,) = site["cond_indep_stack"]
    assert (frame.name, frame.dim, frame.size, frame.subsample_size) == ("data", -1, 5, 5)


def test_nested_plates_allocate_dims_right_to_left():
    cp.set_rng_seed(5)
    with trace() as tr:
        with cp.plate("outer", 3):
            with cp.plate("inner", 4):
                x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
    assert x.shape == (4, 3)
    dims = {frame.name: frame.dim for frame in tr.trace.nodes["x"]["cond_indep_stack"]}
    assert dims == {"outer": -1, "inner": -2}


def test_plate_with_explicit_dim():
    cp.set_rng_seed(6)
    with cp.plate("p", 2, dim=-3):
        x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
    assert x.shape == (2, 1, 1)
    with cp.plate("a", 2, dim=-2):
        with pytest.raises(ValueError, match="dim -2"):
            with cp.plate("b", 3, dim=-2):
                pass


def test_plate_rescales_log_prob_by_size_over_subsample_size():
    cp.set_rng_seed(7)
    data = torch.randn(100) + 1.0

    def model():
        loc = cp.sample("loc", cp.dist.Normal(0.0, 2.0))
        with cp.plate("rows", 100, subsample_size=10) as idx:
            cp.sample("obs", cp.dist.Normal(loc, 1.0), obs=data[idx])
        return idx

    tr = trace(model).get_trace()
    loc = tr.nodes["loc"]["value"]
    idx = tr.nodes["rows"]["value"]
    assert tr.nodes["obs"]["scale"] == pytest.approx(10.0)
    manual = cp.dist.Normal(0.0, 2.0).log_prob(loc)
    manual = manual + 10.0 * cp.dist.Normal(loc, 1.0).log_prob(data[idx]).sum()
    assert tr.log_prob_sum().item() == pytest.approx(manual.item(), rel=1e-6)


def test_subsample_indices_are_in_range_and_unique():
    cp.set_rng_seed(8)
    for _ in range(20):
        with cp.plate("rows", 50, subsample_size=7) as idx:
            pass
        assert idx.shape == (7,)
        assert 0 <= idx.min() and idx.max() < 50
        assert len(set(idx.tolist())) == 7


def test_plate_size_mismatch_names_site_and_plate():
    def model():
        with cp.plate("rows", 3):
            cp.sample("x", cp.dist.Normal(torch.zeros(4), 1.0))

    with pytest.raises(ValueError, match=r"'x'.*'rows'"):
        model()


def test_plate_rejects_bad_sizes():
    with pytest.raises(ValueError, match="'p'"):
        cp.plate("p", 0)
    with pytest.raises(ValueError, match="'p'"):
        cp.plate("p", 3, subsample_size=5)


def test_subsample_indices_are_replayed_from_guide_into_model():
    cp.set_rng_seed(9)
    data = torch.arange(100.0)

    def guide():
        with cp.plate("rows", 100, subsample_size=5):
            cp.sample("z", cp.dist.Normal(0.0, 1.0))

    def model():
        with cp.plate("rows", 100, subsample_size=5) as idx:
            z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
            cp.sample("x", cp.dist.Normal(z, 1.0), obs=data[idx])
        return idx

    guide_trace = trace(guide).get_trace()
    model_trace = trace(replay(model, trace=guide_trace)).get_trace()
    assert torch.equal(model_trace.nodes["rows"]["value"], guide_trace.nodes["rows"]["value"])
    assert torch.equal(model_trace.nodes["z"]["value"], guide_trace.nodes["z"]["value"])
    assert torch.equal(model_trace.nodes["x"]["value"], data[guide_trace.nodes["rows"]["value"]])


# --- messengers and the stack ----------------------------------------------------------------


def test_messenger_as_decorator():
    @cp.handlers.condition(data={"x": torch.tensor(2.0)})
    def model():
        return cp.sample("x", cp.dist.Normal(0.0, 1.0))

    assert model().item() == 2.0
    assert model().item() == 2.0  # reusable

    traced = cp.handlers.trace(param_only=False)(model)
    tr = traced.get_trace()
    assert tr.nodes["x"]["is_observed"]


def test_messenger_without_a_function_cannot_be_called_with_arguments():
    with pytest.raises(TypeError, match="no function"):
        cp.handlers.trace()(1, 2)
    with pytest.raises(ValueError, match="42 is not callable"):
        cp.handlers.trace(42)


def test_stack_is_restored_after_an_exception():
    def model():
        cp.sample("x", cp.dist.Normal(0.0, 1.0))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cp.handlers.trace(cp.handlers.scale(model, scale=2.0)).get_trace()
    assert runtime.HANDLER_STACK == []

    # A handler entered by hand and never exited is dropped by the outer one.
    with pytest.raises(RuntimeError, match="inner"):
        with trace():
            cp.handlers.scale(scale=2.0).__enter__()
            raise RuntimeError("inner")
    assert runtime.HANDLER_STACK == []


def test_sequential_plate_iterates_rescales_and_broadcasts_nothing():
    data = torch.tensor([0.5, -1.0, 2.0, 0.0])

    def model():
        for i in cp.plate("rows", 4, subsample_size=2):
            cp.sample(f"x_{i}", cp.dist.Normal(0.0, 1.0), obs=data[i])

    tr = cp.handlers.trace(model).get_trace()
    sites = [site for site in tr.nodes.values() if site["type"] == "sample"]
    assert len(sites) == 2
    for site in sites:
        assert site["fn"].batch_shape == ()
        assert site["scale"] == pytest.approx(2.0)
        assert [(f.name, f.dim) for f in site["cond_indep_stack"]] == [("rows", None)]
    expected = sum(2.0 * torch.distributions.Normal(0.0, 1.0).log_prob(s["value"]) for s in sites)
    assert torch.allclose(tr.log_prob_sum(), expected)
    assert not cp.runtime.HANDLER_STACK  # the plate left the stack when the loop ended


def test_a_vectorised_plate_inside_a_sequential_one_takes_dim_minus_one():
    def model():
        for _ in cp.plate("groups", 2):
            with cp.plate("rows", 3):
                return cp.sample("x", cp.dist.Normal(0.0, 1.0))

    tr = cp.handlers.trace(model).get_trace()
    assert tr.nodes["x"]["value"].shape == (3,)
    assert [f.dim for f in tr.nodes["x"]["cond_indep_stack"]] == [-1, None]


def test_reentering_a_subsampled_plate_keeps_its_rows():
    # Pyro draws a plate's subsample once per plate object; reusing the object
    # (``with x_axis: ...`` then ``with x_axis, y_axis: ...``) must see the same rows.
    cp.set_rng_seed(3)
    rows = cp.plate("rows", 100, subsample_size=5)
    with rows as first:
        pass
    with rows as second:
        pass
    assert torch.equal(first, second)


def test_full_plate_entered_under_inference_mode_does_not_poison_autograd():
    size = 4093  # a size no other test caches first
    with torch.inference_mode():
        with cp.plate("rows_im", size):
            pass
    x = torch.ones(size, requires_grad=True)
    with cp.plate("rows_im", size) as idx:
        x[idx].sum().backward()
    assert bool((x.grad == 1.0).all())


def test_full_plate_rows_are_on_the_default_device_of_the_moment():
    with cp.plate("rows_dev", 7) as idx:
        assert idx.device.type == "cpu"
    with torch.device("meta"), cp.plate("rows_dev", 7) as idx:
        assert idx.device.type == "meta"
    torch.set_default_device("meta")
    try:
        with cp.plate("rows_dev", 7) as idx:
            assert idx.device.type == "meta"
    finally:
        torch.set_default_device(None)
    with cp.plate("rows_dev", 7) as idx:
        assert idx.device.type == "cpu"


# --- subsampling, complete ---------------------------------------------------------------------


def test_param_with_event_dim_is_subsampled_inside_a_plate():
    cp.clear_param_store()
    init = torch.arange(10.0).reshape(10, 1).repeat(1, 3)
    with cp.plate("rows", 10, subsample=torch.tensor([1, 4])):
        loc = cp.param("loc", init, event_dim=1)
        scale = cp.param("scale", torch.ones(10), constraint=cp.constraints.positive, event_dim=0)
    assert loc.shape == (2, 3) and loc[:, 0].tolist() == [1.0, 4.0]
    assert scale.shape == (2,)
    assert cp.get_param_store()["loc"].shape == (10, 3)  # the store keeps every row
    leaf = loc.unconstrained()
    assert leaf.shape == (10, 3)
    loc.sum().backward()
    assert leaf.grad[:, 0].tolist() == [0.0, 1.0, 0.0, 0.0, 1.0] + [0.0] * 5  # only the rows used
    # Full plates, sequential plates and params without event_dim are left alone.
    with cp.plate("rows", 10):
        assert cp.param("loc", event_dim=1).shape == (10, 3)
    with cp.plate("rows", 10, subsample_size=2):
        assert cp.param("loc").shape == (10, 3)


def test_param_subsampling_in_nested_plates_and_a_bad_size_names_param_and_plate():
    cp.clear_param_store()
    with cp.plate("cols", 4, subsample=torch.tensor([0, 3]), dim=-1):
        with cp.plate("rows", 5, subsample=torch.tensor([2]), dim=-2):
            w = cp.param("w", torch.arange(20.0).reshape(5, 4), event_dim=0)
    assert w.tolist() == [[8.0, 11.0]]
    with pytest.raises(ValueError, match=r"invalid shape of cp.param\('v'\).*size 3.*plate 'rows'.*size 5"):
        with cp.plate("rows", 5, subsample_size=2):
            cp.param("v", torch.zeros(3), event_dim=0)


def test_plate_without_a_size_declares_a_dim_and_takes_sizes_from_the_data():
    data = torch.tensor([0.5, -1.0, 2.0])

    def model():
        with cp.plate("data") as idx:
            assert idx is None
            cp.sample("x", cp.dist.Normal(0.0, 1.0), obs=data)

    tr = trace(model).get_trace()
    site = tr.nodes["x"]
    assert site["fn"].batch_shape == () and site["scale"] == 1.0
    assert [(f.name, f.dim, f.size) for f in site["cond_indep_stack"]] == [("data", -1, -1)]
    expected = sum(normal_logpdf(v, 0.0, 1.0) for v in data.tolist())
    assert tr.log_prob_sum().item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="'data'.*needs a size"):
        cp.plate("data", subsample_size=2)
    with pytest.raises(ValueError, match="'data'.*cannot be iterated"):
        list(cp.plate("data"))


def test_plate_takes_pyros_positional_subsample():
    idx = torch.tensor([0, 3, 7])
    with cp.plate("rows", 10, None, idx) as rows:
        x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
    assert rows is idx and x.shape == (3,)
    with cp.plate("rows", subsample=idx) as rows:  # size taken from the indices
        assert len(rows) == 3
    with pytest.raises(TypeError, match="'rows'.*tensor of row indices.*dim="):
        cp.plate("rows", 10, None, -2)
    with pytest.raises(ValueError, match="'rows'.*subsample_size=2.*len\\(subsample\\)=3"):
        cp.plate("rows", 10, 2, idx)


def test_subsample_indexes_data_by_the_enclosing_plates():
    data = torch.arange(24.0).reshape(4, 3, 2)  # rows x cols x event
    assert cp.subsample(data, event_dim=1) is data  # no plates: unchanged
    with cp.plate("rows", 4, subsample=torch.tensor([1, 3]), dim=-2):
        with cp.plate("cols", 3, subsample=torch.tensor([2]), dim=-1):
            picked = cp.subsample(data, event_dim=1)
    assert torch.equal(picked, data[[1, 3]][:, [2]])
    with cp.plate("rows", 4, subsample_size=2, dim=-1) as idx:
        assert torch.equal(cp.subsample(torch.arange(4.0), event_dim=0), idx.float())
        assert cp.subsample(torch.ones(1), event_dim=0).shape == (1,)  # broadcasting dims stay
        with pytest.raises(ValueError, match=r"subsample\(data, event_dim=0\): size 3.*plate 'rows'.*size 4"):
            cp.subsample(torch.ones(3), event_dim=0)
    with pytest.raises(ValueError, match="event_dim"):
        cp.subsample(data, event_dim=-1)


def test_plate_stack_nests_plates_right_to_left():
    def model():
        with cp.plate_stack("batch", (2, 3, 4)):
            return cp.sample("x", cp.dist.Normal(0.0, 1.0))

    tr = trace(model).get_trace()
    assert tr.nodes["x"]["value"].shape == (2, 3, 4)
    frames = {f.name: (f.dim, f.size) for f in tr.nodes["x"]["cond_indep_stack"]}
    assert frames == {"batch_0": (-1, 4), "batch_1": (-2, 3), "batch_2": (-3, 2)}
    with cp.plate_stack("p", [5], rightmost_dim=-2):
        assert cp.sample("y", cp.dist.Normal(0.0, 1.0)).shape == (5, 1)


def test_a_guides_subsample_is_replayed_into_a_model_plate_without_subsample_size():
    cp.set_rng_seed(11)
    data = torch.arange(100.0)

    def guide():
        with cp.plate("rows", 100, subsample_size=10):
            cp.sample("z", cp.dist.Normal(0.0, 1.0))

    def model():
        with cp.plate("rows", 100) as idx:
            z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
            cp.sample("x", cp.dist.Normal(z, 1.0), obs=cp.subsample(data, event_dim=0))
        return idx

    guide_trace = trace(guide).get_trace()
    tracer = trace(replay(model, trace=guide_trace))
    rows = guide_trace.nodes["rows"]["value"]
    assert torch.equal(tracer(), rows)
    model_trace = tracer.trace
    assert torch.equal(model_trace.nodes["x"]["value"], data[rows])
    assert model_trace.nodes["x"]["scale"] == pytest.approx(10.0)
    assert model_trace.nodes["x"]["cond_indep_stack"][0].subsample_size == 10
    # Without replay the same model plate covers every row, and records no plate site.
    plain = trace(model).get_trace()
    assert plain.nodes["x"]["value"].shape == (100,) and "rows" not in plain


def test_mismatched_subsample_sizes_of_guide_and_model_name_the_plate():
    def guide():
        with cp.plate("rows", 100, subsample_size=10):
            cp.sample("z", cp.dist.Normal(0.0, 1.0))

    def model():
        with cp.plate("rows", 100, subsample_size=5):
            cp.sample("z", cp.dist.Normal(0.0, 1.0))

    guide_trace = trace(guide).get_trace()
    with pytest.raises(ValueError, match="plate 'rows': subsample_size is 5.*used 10 rows"):
        trace(replay(model, trace=guide_trace)).get_trace()
    with pytest.raises(ValueError, match="plate 'rows'"):
        cp.infer.Trace_ELBO().loss(model, guide)


def test_obs_mask_observes_some_entries_and_samples_the_others():
    cp.set_rng_seed(12)
    data = torch.tensor([1.0, 5.0, -2.0])
    observed = torch.tensor([True, False, True])

    def model():
        with cp.plate("rows", 3):
            return cp.sample("x", cp.dist.Normal(0.0, 1.0), obs=data, obs_mask=observed)

    tr = trace(model).get_trace()
    value = tr.nodes["x"]["value"]
    assert value[0].item() == 1.0 and value[2].item() == -2.0 and value[1].item() != 5.0
    assert tr.nodes["x"]["infer"].get("_deterministic") and tr.nodes["x_observed"]["is_observed"]
    assert not tr.nodes["x_unobserved"]["is_observed"]
    # The joint density counts the observed entries once and the sampled one once.
    unobserved = tr.nodes["x_unobserved"]["value"][1]
    expected = normal_logpdf(1.0, 0.0, 1.0) + normal_logpdf(-2.0, 0.0, 1.0) + normal_logpdf(unobserved.item(), 0, 1)
    assert tr.log_prob_sum().item() == pytest.approx(expected, rel=1e-5)
    assert model().shape == (3,)
    with pytest.raises(ValueError, match="'x'.*obs_mask needs obs"):
        cp.sample("x", cp.dist.Normal(0.0, 1.0), obs_mask=observed)


def test_validation_can_be_switched_off_and_back():
    assert cp.runtime.is_validation_enabled()
    with cp.validation_enabled(False):
        assert not cp.runtime.is_validation_enabled()
        cp.dist.Normal(0.0, -1.0)  # torch's argument checks are off too
    assert cp.runtime.is_validation_enabled()
    with pytest.raises(ValueError):
        cp.dist.Normal(0.0, -1.0)
    cp.enable_validation(False)
    try:
        assert not cp.runtime.is_validation_enabled()
    finally:
        cp.enable_validation(True)


def test_pyro_util_helpers_are_importable_where_pyro_keeps_them():
    from causalppl.infer.util import torch_item
    from causalppl.util import optional, set_rng_seed, warn_if_nan

    set_rng_seed(3)
    first = torch.rand(())
    set_rng_seed(3)
    assert torch.rand(()) == first
    assert torch_item(torch.tensor(1.5)) == 1.5
    with optional(torch.no_grad(), True):
        assert not torch.ones(1, requires_grad=True).mul(2).requires_grad
    with pytest.warns(UserWarning, match="Encountered NaN: loss"):
        warn_if_nan(torch.tensor(float("nan")), "loss")


def test_warn_if_inf_allows_one_sign_and_watches_the_gradient():
    import warnings

    from causalppl.util import warn_if_inf, warn_if_nan

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert warn_if_inf(3, "x", allow_posinf=True, allow_neginf=True) == 3
        warn_if_inf(torch.tensor([1.0, math.inf]), "x", allow_posinf=True)
        assert caught == []
        warn_if_inf(torch.tensor([1.0, math.inf]), "x", allow_neginf=True)
        assert len(caught) == 1 and "+Inf: x" in str(caught[0].message)
        leaf = torch.ones(2, requires_grad=True)
        warn_if_nan(leaf, "leaf")
        leaf.sum().backward(torch.tensor(math.nan))
        assert len(caught) == 2 and "NaN: backward leaf" in str(caught[1].message)


def test_pyro_runtime_names_read_the_one_handler_stack():
    from causalppl.handlers.runtime import _DIM_ALLOCATOR, _PYRO_STACK, get_plates

    assert _PYRO_STACK is cp.runtime.HANDLER_STACK and get_plates() == ()
    with cp.plate("outer", 2), cp.plate("inner", 3, dim=-3):
        assert [frame.name for frame in get_plates()] == ["outer", "inner"]
        assert _DIM_ALLOCATOR._stack == ["outer", None, "inner"]
    assert _DIM_ALLOCATOR._stack == []


def test_a_plate_of_size_zero_names_the_plate_and_leaves_no_dims_behind():
    from causalppl.handlers.runtime import _DIM_ALLOCATOR

    def model():
        with cp.plate("empty", 0):
            pass

    with pytest.raises(ZeroDivisionError, match="plate 'empty': size must be a positive integer"):
        cp.handlers.trace(model)()
    with pytest.raises(ValueError):
        cp.plate("empty", 0)
    assert _DIM_ALLOCATOR._stack == [] and not cp.runtime.HANDLER_STACK
