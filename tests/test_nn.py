"""cp.nn: PyroModule, PyroParam, PyroSample (site names, caching, constraints, param store, SVI)."""

import io

import pytest
import torch
from torch import nn
from torch.distributions import constraints, transform_to

import causalppl as cp
from causalppl import handlers
from causalppl.infer import SVI, Trace_ELBO
from causalppl.infer.autoguide import AutoLaplaceApproximation, init_to_value
from causalppl.nn import PyroModule, PyroParam, PyroSample, clear, pyro_method, to_pyro_module_


@pytest.fixture(autouse=True)
def fresh_store():
    cp.clear_param_store()
    cp.set_rng_seed(0)
    yield
    cp.clear_param_store()


class Model(PyroModule):
    def __init__(self):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(2))
        self.scale = PyroParam(torch.ones(2), constraint=constraints.positive)
        self.z = PyroSample(lambda self: cp.dist.Normal(self.loc, self.scale).to_event(1))

    def forward(self, data):
        loc, log_scale = self.z.unbind(-1)
        with cp.plate("data"):
            cp.sample("obs", cp.dist.Cauchy(loc, log_scale.exp()), obs=data)


def test_attributes_become_param_and_sample_sites_named_by_their_path():
    tr = handlers.trace(Model()).get_trace(torch.randn(5))
    assert [(name, tr.nodes[name]["type"]) for name in ("loc", "scale", "z", "obs")] == [
        ("loc", "param"), ("scale", "param"), ("z", "sample"), ("obs", "sample")]
    assert tr.nodes["z"]["value"].shape == (2,)
    assert sorted(cp.get_param_store().keys()) == ["loc", "scale"]


class Guide(PyroModule):
    def __init__(self):
        super().__init__()
        self.q_loc = nn.Parameter(torch.zeros(2))
        self.q_scale = PyroParam(torch.ones(2), constraint=constraints.positive)
        self.z = PyroSample(lambda self: cp.dist.Normal(self.q_loc, self.q_scale).to_event(1))

    def forward(self, *args):
        return self.z


def test_svi_trains_the_modules_own_parameters():
    model, guide = Model(), Guide()
    data = torch.randn(5)
    before = guide.q_loc.detach().clone(), guide.q_scale.detach().clone()
    svi = SVI(model, guide, cp.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(5):
        svi.step(data)
    assert not torch.equal(guide.q_loc.detach(), before[0])
    assert not torch.equal(guide.q_scale.detach(), before[1])
    assert cp.get_param_store().leaf("q_loc") is guide.q_loc  # the store holds the module's own tensor
    assert cp.get_param_store().leaf("q_scale") is guide.q_scale_unconstrained


def test_nested_names_constrained_params_and_plain_torch_children():
    class Outer(PyroModule):
        def __init__(self):
            super().__init__()
            self.x = nn.Parameter(torch.tensor(0.0))
            self.y = PyroParam(torch.tensor(1.0), constraint=constraints.positive)
            self.m = nn.Module()
            self.m.u = nn.Parameter(torch.tensor(2.0))
            self.p = PyroModule()
            self.p.v = nn.Parameter(torch.tensor(3.0))
            self.p.w = PyroParam(torch.tensor(4.0), constraint=constraints.positive)

        def forward(self):
            return self.x, self.y, self.m, self.p.v, self.p.w

    model = Outer()
    assert {name for name, _ in model.named_parameters()} == {"x", "y_unconstrained", "m.u", "p.v",
                                                             "p.w_unconstrained"}
    with handlers.trace(param_only=True) as capture:
        model()
    # Pyro's names: plain torch submodules' params are "module$$$param".
    assert set(capture.trace.nodes) == {"x", "y", "m$$$u", "p.v", "p.w"}
    assert set(cp.get_param_store().keys()) == {"x", "y", "m$$$u", "p.v", "p.w"}
    assert {name for name, _ in model.named_pyro_params()} == {"x", "y", "m.u", "p.v", "p.w"}
    assert cp.param("p.w").item() == pytest.approx(4.0)


@pytest.mark.parametrize("shape,constraint", [
    ((), constraints.positive), ((3, 2), constraints.positive), ((5,), constraints.simplex),
    ((4, 4), constraints.lower_cholesky), ((3,), constraints.interval(-1.0, 2.0)),
])
def test_pyro_param_keeps_its_constraint(shape, constraint):
    module = PyroModule()
    module.x = PyroParam(transform_to(constraint)(torch.zeros(shape)), constraint)
    assert isinstance(module.x_unconstrained, nn.Parameter)
    assert module.x.shape == shape and bool(constraint.check(module.x).all())
    with torch.no_grad():
        module.x_unconstrained.normal_()
    assert torch.allclose(module.x, transform_to(constraint)(module.x_unconstrained))
    del module.x
    assert not hasattr(module, "x") and not hasattr(module, "x_unconstrained")


def test_assigning_a_tensor_sets_a_pyro_params_value():
    module = PyroModule()
    module.x = PyroParam(torch.tensor(1.0), constraints.positive)
    module.x = torch.tensor(0.25)
    assert module.x.item() == pytest.approx(0.25)
    assert module.x_unconstrained.item() == pytest.approx(torch.tensor(0.25).log().item())


def test_samples_are_cached_within_a_call_and_fresh_across_calls():
    class Twice(PyroModule):
        def __init__(self):
            super().__init__()
            self.c = PyroSample(cp.dist.Normal(0.0, 1.0))
            self.child = PyroModule()
            self.child.d = PyroSample(cp.dist.Normal(0.0, 1.0))

        def forward(self):
            return (self.c, self.child.d), (self.c, self.child.d)

    module = Twice()
    assert module._pyro_context is module.child._pyro_context
    first, second = module()
    assert first[0] is second[0] and first[1] is second[1]
    again, _ = module()
    assert again[0] is not first[0]
    tr = handlers.trace(module).get_trace()
    assert [n for n in tr.nodes if n not in ("_INPUT", "_RETURN")] == ["c", "child.d"]


def test_a_prior_may_depend_on_other_sites():
    def hierarchy_prior(module):
        latent = cp.sample("a", cp.dist.Normal(0.0, 1.0))
        return cp.dist.Normal(latent, 1.0)

    class Hierarchical(PyroModule):
        def __init__(self):
            super().__init__()
            self.b = PyroSample(hierarchy_prior)

        def forward(self):
            return self.b + self.b

    tr = handlers.trace(Hierarchical()).get_trace()
    assert set(tr.nodes) == {"_INPUT", "a", "b", "_RETURN"}
    assert torch.equal(tr.nodes["_RETURN"]["value"], 2 * tr.nodes["b"]["value"])


class Decorated(PyroModule):
    def __init__(self, size):
        super().__init__()
        self.size = size

    @PyroParam
    def x(self):
        return torch.zeros(self.size)

    @PyroParam(constraint=constraints.positive, event_dim=1)
    def z(self):
        return torch.ones(self.size)

    @PyroSample
    def s(self):
        return cp.dist.Normal(0.0, 1.0)

    @PyroSample
    def t(self):
        return cp.dist.Normal(self.s, self.z).to_event(1)

    def forward(self):
        return self.x + self.t

    @pyro_method
    def draw_s(self):
        return self.s, self.s


@pytest.mark.parametrize("size", [1, 2])
def test_decorators_define_params_and_samples(size):
    model = Decorated(size)
    for _ in range(2):
        tr = handlers.trace(model).get_trace()
        assert {name: site["type"] for name, site in tr.nodes.items()} == {
            "_INPUT": "args", "x": "param", "s": "sample", "z": "param", "t": "sample", "_RETURN": "return"}
        assert tr.nodes["t"]["value"].shape == (size,) and tr.nodes["s"]["value"].shape == ()
    first, second = model.draw_s()
    assert first is second  # pyro_method: one draw per call, as in forward


def test_pyro_module_of_a_torch_class():
    assert PyroModule[nn.Module] is PyroModule and PyroModule[PyroModule] is PyroModule
    net = PyroModule[nn.Sequential](PyroModule[nn.Linear](4, 3), PyroModule[nn.Sigmoid](),
                                    PyroModule[nn.Linear](3, 2))
    assert isinstance(net, nn.Sequential) and type(net).__name__ == "PyroSequential"
    assert PyroModule[type(net)] is type(net) and type(net[0]) is type(net[2])  # noqa: E721
    assert [net[i]._pyro_name for i in range(3)] == ["0", "1", "2"]
    data = torch.randn(4)
    expected = net(data)
    assert sorted(cp.get_param_store().keys()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    buffer = io.BytesIO()
    torch.save(net, buffer)  # the made-up classes pickle by the torch class they wrap
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded).__name__ == "PyroSequential" and torch.allclose(loaded(data), expected)


def test_to_pyro_module_converts_in_place_and_makes_a_bayesian_gru():
    gru = nn.GRU(2, 3)
    inputs = torch.randn(5, 4, 2)
    to_pyro_module_(gru)
    assert type(gru).__name__ == "PyroGRU"
    for name, value in list(gru.named_parameters(recurse=False)):
        setattr(gru, name, PyroSample(cp.dist.Normal(0.0, 1.0).expand(value.shape).to_event(value.dim())))
    out1, _ = gru(inputs)
    out2, _ = gru(inputs)
    assert out1.shape == (5, 4, 3) and not torch.allclose(out1, out2)
    assert {n for n in handlers.trace(gru).get_trace(inputs).nodes} >= {"weight_ih_l0", "bias_hh_l0"}


def test_clear_removes_params_from_the_module_and_the_store():
    class Small(PyroModule):
        def __init__(self):
            super().__init__()
            self.x = nn.Parameter(torch.tensor(0.0))
            self.m = nn.Linear(2, 3)
            self.p = PyroModule()
            self.p.x = nn.Parameter(torch.tensor(3.0))

        def forward(self):
            return self.x, self.m.weight, self.p.x

    module = Small()
    module()
    assert set(cp.get_param_store().keys()) == {"x", "m$$$weight", "m$$$bias", "p.x"}
    clear(module)
    assert set(cp.get_param_store().keys()) == set()


def test_the_store_keeps_its_values_for_a_second_module_and_after_loading(tmp_path):
    class One(PyroModule):
        def __init__(self, value):
            super().__init__()
            self.x = PyroParam(torch.tensor(value), constraints.positive)
            self.y = nn.Parameter(torch.tensor([value, value]))

        def forward(self):
            return self.x, self.y

    first = One(1.5)
    first()
    path = tmp_path / "store.pt"
    cp.get_param_store().save(path)
    cp.clear_param_store()
    cp.get_param_store().load(path)
    second = One(7.0)
    x, y = second()  # the loaded values win over the new module's initial ones
    assert x.item() == pytest.approx(1.5) and y.tolist() == pytest.approx([1.5, 1.5])
    assert second.x.item() == pytest.approx(1.5)


def test_params_go_to_the_active_param_scope():
    store = cp.ParamStore()
    module = Model()
    with handlers.param_scope(store=store):
        module(torch.randn(3))
    assert set(store.keys()) == {"loc", "scale"} and len(cp.get_param_store()) == 0


def test_bayesian_linear_layer_has_the_conjugate_posterior():
    """PyroModule[nn.Linear] with a PyroSample weight prior: the Laplace approximation is exact here."""
    cp.set_rng_seed(1)
    x = torch.randn(30, 2)
    y = x @ torch.tensor([1.5, -0.5]) + 0.3 * torch.randn(30)
    sigma, tau = 0.3, 1.0

    class Regression(PyroModule):
        def __init__(self):
            super().__init__()
            self.linear = PyroModule[nn.Linear](2, 1, bias=False)
            self.linear.weight = PyroSample(cp.dist.Normal(0.0, tau).expand([1, 2]).to_event(2))

        def forward(self, x, y=None):
            mean = self.linear(x).squeeze(-1)
            with cp.plate("data", x.shape[0]):
                cp.sample("obs", cp.dist.Normal(mean, sigma), obs=y)
            return mean

    precision = x.T @ x / sigma ** 2 + torch.eye(2) / tau ** 2
    cov = torch.linalg.inv(precision)
    mean = cov @ x.T @ y / sigma ** 2
    model = Regression()
    guide = AutoLaplaceApproximation(model, init_loc_fn=init_to_value(values={"linear.weight": torch.zeros(1, 2)}))
    svi = SVI(model, guide, cp.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(400):
        svi.step(x, y)
    assert guide.median(x, y)["linear.weight"].reshape(2).tolist() == pytest.approx(mean.tolist(), abs=2e-3)
    gaussian = guide.laplace_approximation(x, y).get_posterior()
    assert torch.allclose(gaussian.covariance_matrix, cov, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("local", [True, False])
def test_module_local_params_keep_the_store_empty(local):
    with cp.settings.context(module_local_params=local):
        model, guide = Model(), Guide()
        data = torch.randn(5)
        with handlers.trace(param_only=True) as capture:
            model(data)
        assert set(capture.trace.nodes) == {"loc", "scale"}  # sites either way
        before = guide.q_loc.detach().clone()
        svi = SVI(model, guide, cp.optim.Adam({"lr": 0.05}), Trace_ELBO())
        for _ in range(3):
            svi.step(data)
        assert not torch.equal(guide.q_loc.detach(), before)  # trained either way
        expected = set() if local else {"loc", "scale", "q_loc", "q_scale"}
        assert set(cp.get_param_store().keys()) == expected


def test_module_local_params_refuse_params_the_module_does_not_own():
    class Borrower(PyroModule):
        def __init__(self):
            super().__init__()
            self.own = nn.Parameter(torch.zeros(2))

        def forward(self):
            return cp.param("borrowed", lambda: torch.randn(2)), cp.param("own", self.own)

    with cp.settings.context(module_local_params=True):
        with pytest.raises(NotImplementedError, match="does not own"):
            Borrower()()
    Borrower()()  # fine with the store
    assert "borrowed" in cp.get_param_store()
