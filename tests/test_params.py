"""Tests for causalppl.params: the param store, constraints, save/load, seeding."""

import math
import os

import pytest
import torch

import causalppl as cp
from causalppl.params import ParamStore

constraints = cp.constraints


@pytest.mark.parametrize(
    "constraint, init",
    [
        (constraints.positive, torch.tensor([0.5, 2.0])),
        (constraints.interval(-1.0, 3.0), torch.tensor([-0.5, 2.5])),
        (constraints.simplex, torch.tensor([0.2, 0.3, 0.5])),
        (constraints.lower_cholesky, torch.tensor([[1.0, 0.0], [0.5, 2.0]])),
    ],
    ids=["positive", "interval", "simplex", "lower_cholesky"],
)
def test_constrained_params_stay_constrained_and_train_through_the_leaf(constraint, init):
    value = cp.param("p", init, constraint=constraint)
    assert torch.allclose(value, init, atol=1e-5)
    leaf = value.unconstrained()
    assert leaf is cp.get_param_store().leaf("p")
    assert leaf.is_leaf and leaf.requires_grad

    (value * torch.arange(1.0, value.numel() + 1).reshape(value.shape)).sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    assert leaf.grad.abs().sum() > 0

    # Any step on the leaf keeps the constrained value valid.
    with torch.no_grad():
        leaf.add_(torch.randn(leaf.shape, generator=torch.Generator().manual_seed(0)) * 3.0)
    assert constraint.check(cp.param("p")).all()


def test_later_calls_ignore_init():
    first = cp.param("w", torch.tensor(1.0))
    second = cp.param("w", torch.tensor(10.0), constraint=constraints.positive)
    assert first.item() == second.item() == 1.0
    assert cp.param("w").item() == 1.0


def test_callable_init_is_called_once():
    calls = []

    def init():
        calls.append(1)
        return torch.zeros(2)

    cp.param("c", init)
    cp.param("c", init)
    assert len(calls) == 1


def test_missing_param_without_init_raises_key_error_naming_it():
    cp.param("known", torch.tensor(1.0))
    with pytest.raises(KeyError, match="'missing'.*known"):
        cp.param("missing")
    with pytest.raises(KeyError, match="'missing'"):
        cp.get_param_store()["missing"]


def test_init_violating_the_constraint_raises_value_error():
    with pytest.raises(ValueError, match="'neg'.*constraint"):
        cp.param("neg", torch.tensor(-1.0), constraint=constraints.positive)
    assert "neg" not in cp.get_param_store()


def test_store_mapping_interface():
    store = cp.get_param_store()
    cp.param("a", torch.tensor(1.0))
    cp.param("b", torch.tensor(2.0), constraint=constraints.positive)
    assert store.keys() == ["a", "b"] and len(store) == 2 and list(store) == ["a", "b"]
    assert [name for name, _ in store.named_parameters()] == ["a", "b"]
    store["b"] = torch.tensor(5.0)  # keeps its positive constraint
    assert store["b"].item() == pytest.approx(5.0)
    assert store.get_constraint("b") is constraints.positive
    del store["a"]
    assert store.keys() == ["b"]
    cp.clear_param_store()
    assert len(store) == 0


def test_save_and_load_round_trip(tmp_path):
    cp.param("loc", torch.tensor([1.0, -2.0]))
    cp.param("scale", torch.tensor(0.5), constraint=constraints.positive)
    cp.param("prob", torch.tensor(0.25), constraint=constraints.interval(0.0, 1.0))
    cp.param("weights", torch.tensor([0.1, 0.2, 0.7]), constraint=constraints.simplex)
    expected = {name: value.detach().clone() for name, value in cp.get_param_store().items()}
    path = tmp_path / "params.pt"
    cp.get_param_store().save(path)

    cp.clear_param_store()
    cp.get_param_store().load(path, map_location="cpu")
    store = cp.get_param_store()
    assert store.keys() == list(expected)
    for name, value in expected.items():
        assert torch.allclose(store[name], value, atol=1e-6), name
        assert store[name].device.type == "cpu"
    assert store.get_constraint("scale") is constraints.positive
    interval = store.get_constraint("prob")
    assert (interval.lower_bound, interval.upper_bound) == (0.0, 1.0)
    assert store.get_constraint("weights") is constraints.simplex
    assert store.leaf("scale").requires_grad


def test_save_is_atomic(tmp_path, monkeypatch):
    cp.param("a", torch.tensor(1.0))
    path = tmp_path / "params.pt"
    cp.get_param_store().save(path)
    before = path.read_bytes()

    def crash(obj, file, *args, **kwargs):
        file.write(b"half a file")
        raise RuntimeError("disk full")

    cp.get_param_store()["a"] = torch.tensor(2.0)
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        cp.get_param_store().save(path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["params.pt"]  # no temporary file left behind
    cp.clear_param_store()
    cp.get_param_store().load(path)
    assert cp.param("a").item() == 1.0


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"PK\x03\x04 truncated zip"])
def test_loading_garbage_raises_value_error_naming_the_file(tmp_path, content):
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="garbage.pt"):
        ParamStore().load(path)


def test_loading_a_torch_file_that_is_not_a_store(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2)}, path)
    with pytest.raises(ValueError, match="not a causalppl param store"):
        ParamStore().load(path)


def test_module_registers_nn_module_parameters():
    net = cp.module("net", torch.nn.Linear(3, 2))
    store = cp.get_param_store()
    assert sorted(store.keys()) == ["net$$$bias", "net$$$weight"]  # Pyro's names
    assert store.leaf("net$$$weight") is net.weight  # shared, not copied
    with cp.trace(param_only=True) as capture:
        cp.module("net", net)
    assert sorted(capture.trace.nodes) == ["net$$$bias", "net$$$weight"]


def test_set_rng_seed_reproduces_draws():
    cp.set_rng_seed(123)
    first = [cp.sample("x", cp.dist.Normal(0.0, 1.0)).item() for _ in range(3)]
    cp.set_rng_seed(123)
    second = [cp.sample("x", cp.dist.Normal(0.0, 1.0)).item() for _ in range(3)]
    cp.set_rng_seed(124)
    third = [cp.sample("x", cp.dist.Normal(0.0, 1.0)).item() for _ in range(3)]
    assert first == second and first != third


# -- all-or-nothing loads of malformed files (issue 9) -------------------------------------------


MALFORMED = {
    "params-not-a-dict": {"params": [1.0, 2.0]},
    "no-params": {"constraints": {}},
    "a-list": [1, 2, 3],
    "constraints-not-a-dict": {"params": {"a": torch.ones(1)}, "constraints": ["positive"]},
    "a-string-param": {"params": {"a": torch.ones(1), "b": "0.5"}, "constraints": {}},
    "an-integer-param": {"params": {"a": torch.ones(1), "b": torch.ones(1, dtype=torch.long)}},
    "unknown-constraint": {"params": {"a": torch.ones(1), "b": torch.ones(1)}, "constraints": {"b": ["nope"]}},
    "constraint-as-string": {"params": {"a": torch.ones(1), "b": torch.ones(1)}, "constraints": {"b": "positive"}},
    "empty-constraint": {"params": {"a": torch.ones(1), "b": torch.ones(1)}, "constraints": {"b": []}},
    "interval-missing-a-bound": {"params": {"a": torch.ones(1), "b": torch.ones(1)},
                                 "constraints": {"b": ["interval", 0.0]}},
    "interval-bound-a-string": {"params": {"a": torch.ones(1), "b": torch.ones(1)},
                                "constraints": {"b": ["interval", "0", "1"]}},
    "independent-without-dims": {"params": {"a": torch.ones(1), "b": torch.ones(1)},
                                 "constraints": {"b": ["independent", ["real"]]}},
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_file_is_a_value_error_naming_it_and_changes_nothing(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    torch.save(MALFORMED[kind], path)
    cp.param("a", torch.tensor(5.0))
    cp.param("s", torch.tensor(2.0), constraint=constraints.positive)
    with pytest.raises(ValueError, match=f"{kind}.pt"):
        cp.get_param_store().load(path)
    store = cp.get_param_store()
    assert store.keys() == ["a", "s"]
    assert store["a"].item() == 5.0 and store["s"].item() == pytest.approx(2.0)
    assert store.get_constraint("s") is constraints.positive


def test_a_bad_entry_after_good_ones_loads_none_of_them(tmp_path):
    store = ParamStore()
    store.get_param("loc", torch.tensor(1.0))
    state = {"params": {"loc": torch.tensor(9.0), "scale": torch.tensor(0.0)},
             "constraints": {"loc": ["real"], "scale": ["not-a-constraint"]}}
    path = tmp_path / "half-bad.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"half-bad.pt: param 'scale': unknown constraint"):
        store.load(path)
    assert store.keys() == ["loc"] and store["loc"].item() == 1.0


def test_param_store_setdefault_names_and_guarded_replace():
    store = cp.ParamStore()
    first = store.setdefault("a", torch.tensor(2.0), constraint=cp.dist.constraints.positive)
    assert store.setdefault("a", torch.tensor(9.0)).item() == pytest.approx(2.0)
    assert store.get_all_param_names() == ["a"]
    with pytest.raises(ValueError, match="param 'a'"):
        store.replace_param("a", torch.tensor(5.0), torch.tensor(2.0))
    assert store["a"].item() == pytest.approx(2.0)
    store.replace_param("a", torch.tensor(5.0), first)
    assert store["a"].item() == pytest.approx(5.0)
    assert store.get_constraint("a") is cp.dist.constraints.positive


def test_flat_params_share_one_leaf_and_give_each_param_its_own_back():
    from causalppl.params import FlatParams

    one, two = ParamStore(), ParamStore()
    one.get_param("w", torch.tensor([1.0, 2.0]))
    one.get_param("s", torch.tensor(0.5), constraints.positive)
    two.get_param("m", torch.tensor([[3.0]]))
    packed = FlatParams([(one, "w"), (one, "s"), (two, "m")])
    assert packed.flat.is_leaf and packed.flat.shape == (4,)
    assert packed.span(one, "s") == (2, 3) and packed.span(two, "m") == (3, 4)
    with torch.no_grad():
        packed.flat.add_(1.0)  # one update of the flat leaf is an update of every param
    assert one["w"].tolist() == [2.0, 3.0] and two["m"].shape == (1, 1) and two["m"].item() == 4.0
    assert one["s"].item() == pytest.approx(0.5 * math.e)  # the leaf is unconstrained: log 0.5 + 1
    packed.unpack()
    assert all(leaf._base is None for store in (one, two) for _, leaf in store.named_parameters())
    assert one["w"].tolist() == [2.0, 3.0] and one.get_constraint("s") is constraints.positive


def test_flat_params_refuse_mixed_dtypes():
    from causalppl.params import FlatParams

    store = ParamStore()
    store.get_param("a", torch.tensor(1.0))
    store.get_param("b", torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="several dtypes or devices"):
        FlatParams([(store, "a"), (store, "b")])


def test_a_positive_param_is_read_through_exp_alone():
    """transform_to(positive) is exp then 0 + 1 * x; the store drops the step that changes nothing."""
    store = ParamStore()
    value = store.get_param("s", torch.tensor(2.0), constraints.positive)
    assert type(store._transforms["s"]).__name__ == "ExpTransform"
    assert value.item() == pytest.approx(2.0) and torch.equal(value, store.leaf("s").exp())


# --- nn.Module params under Pyro's names ("module$$$param") --------------------------------


def test_module_param_names_follow_pyro_and_user_param_name_strips_the_module():
    from causalppl.params import module_from_param_with_module_name, param_with_module_name, user_param_name

    cp.clear_param_store()
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    cp.module("net", net)
    names = cp.get_param_store().keys()
    assert sorted(user_param_name(name) for name in names) == sorted(net.state_dict())
    assert param_with_module_name("net", "0.weight") in names
    assert module_from_param_with_module_name("net$$$0.weight") == "net"
    assert cp.get_param_store()._params["net$$$0.weight"] is net[0].weight
    assert cp.get_param_store()._param_to_name[net[2].bias] == "net$$$2.bias"


def test_module_skips_frozen_params_and_warns_while_training():
    cp.clear_param_store()
    net = torch.nn.Linear(2, 1)
    net.bias.requires_grad_(False)
    with pytest.warns(UserWarning, match="bias was not registered"):
        cp.module("net", net)
    assert cp.get_param_store().keys() == ["net$$$weight"]


def test_update_module_params_decides_whose_tensor_the_module_keeps():
    cp.clear_param_store()
    stored = cp.module("net", torch.nn.Linear(2, 1))
    fresh = torch.nn.Linear(2, 1)
    cp.module("net", fresh, update_module_params=False)
    assert fresh.weight is not cp.param("net$$$weight")
    assert not torch.equal(fresh.weight, stored.weight)
    cp.module("net", fresh, update_module_params=True)
    assert fresh.weight is cp.param("net$$$weight") and torch.equal(fresh.weight, stored.weight)


def test_random_module_draws_each_param_from_the_prior_and_leaves_the_module_alone():
    cp.clear_param_store()
    net = torch.nn.Linear(2, 2)
    before = net.weight.detach().clone()
    with pytest.warns(FutureWarning, match="deprecated"):
        draw = cp.random_module("net", net, cp.dist.Normal(3.0, 1e-4))
    tr = cp.handlers.trace(draw).get_trace()
    drawn = tr.nodes["_RETURN"]["value"]
    assert tr.nodes["net$$$weight"]["type"] == "sample" and tr.nodes["net$$$bias"]["type"] == "sample"
    assert torch.allclose(drawn.weight, torch.full((2, 2), 3.0), atol=1e-3)
    assert torch.equal(net.weight.detach(), before) and len(cp.get_param_store()) == 0
