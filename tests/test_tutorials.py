"""Pyro's tutorials, transliterated (``pyro.`` -> ``cp.``, ``pyro.poutine`` -> ``cp.handlers``), end to end.

Each test is a tutorial's code cells in order, checked against the numbers
the tutorial publishes (or, where a tutorial's published numbers come from an
older Pyro, against Pyro 1.9's own output for the same seed):

- ``bayesian_regression`` (Bayesian Regression, Part 1): ``PyroModule[nn.Linear]``
  fit by least squares with a torch optimiser, then made Bayesian with
  ``PyroSample`` priors, fit with ``AutoDiagonalNormal`` and summarised with
  ``Predictive(return_sites=[..., "_RETURN"])``. The data are Nunn & Puga's
  terrain-ruggedness table (``tests/data/rugged_data.csv``: the 170 countries
  with a GDP figure). The TorchScript-serving section is left out.
- ``tensor_shapes`` (Tensor shapes in Pyro): distribution shapes, plates,
  ``format_shapes``, subsampling. The cells that enumerate discrete latents
  (``config_enumerate``, ``TraceEnum_ELBO``, ``handlers.enum``) need the
  enumeration engine and are skipped while ``cp.infer.TraceEnum_ELBO`` is absent.
- ``svi_part_iii`` (SVI Part III): ``TraceGraph_ELBO`` with a decaying-average
  baseline on a non-reparameterised Beta.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.distributions import constraints

import causalppl as pyro
import causalppl.distributions as dist
import causalppl.handlers as poutine
from causalppl.distributions import Bernoulli, Categorical, MultivariateNormal, Normal
from causalppl.distributions.testing.fakes import NonreparameterizedBeta
from causalppl.distributions.util import broadcast_shape
from causalppl.infer import SVI, Predictive, Trace_ELBO, TraceGraph_ELBO
from causalppl.infer.autoguide import AutoDiagonalNormal
from causalppl.nn import PyroModule, PyroSample

pytestmark = pytest.mark.usefixtures("one_thread_seeded")

pd = pytest.importorskip("pandas")

needs_enumeration = pytest.mark.skipif(
    not hasattr(pyro.infer, "TraceEnum_ELBO"),
    reason="enumeration of discrete latents (TraceEnum_ELBO, config_enumerate) is not in this build yet")


# --- bayesian_regression ------------------------------------------------------------------


def rugged_data():
    df = pd.read_csv(__file__.rsplit("/", 1)[0] + "/data/rugged_data.csv")
    df = df[["cont_africa", "rugged", "rgdppc_2000"]]
    df = df[np.isfinite(df.rgdppc_2000)]
    df["rgdppc_2000"] = np.log(df["rgdppc_2000"])
    df["cont_africa_x_rugged"] = df["cont_africa"] * df["rugged"]
    data = torch.tensor(df[["cont_africa", "rugged", "cont_africa_x_rugged", "rgdppc_2000"]].values,
                        dtype=torch.float)
    return data[:, :-1], data[:, -1]


class BayesianRegression(PyroModule):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = PyroModule[nn.Linear](in_features, out_features)
        self.linear.weight = PyroSample(dist.Normal(0., 1.).expand([out_features, in_features]).to_event(2))
        self.linear.bias = PyroSample(dist.Normal(0., 10.).expand([out_features]).to_event(1))

    def forward(self, x, y=None):
        sigma = pyro.sample("sigma", dist.Uniform(0., 10.))
        mean = self.linear(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Normal(mean, sigma), obs=y)
        return mean


def summary(samples):
    site_stats = {}
    for k, v in samples.items():
        site_stats[k] = {
            "mean": torch.mean(v, 0),
            "std": torch.std(v, 0),
            "5%": v.kthvalue(int(len(v) * 0.05), dim=0)[0],
            "95%": v.kthvalue(int(len(v) * 0.95), dim=0)[0],
        }
    return site_stats


def test_bayesian_regression_least_squares_with_a_torch_optimizer():
    pyro.set_rng_seed(1)
    x_data, y_data = rugged_data()
    assert x_data.shape == (170, 3)
    linear_reg_model = PyroModule[nn.Linear](3, 1)
    loss_fn = torch.nn.MSELoss(reduction="sum")
    optim = torch.optim.Adam(linear_reg_model.parameters(), lr=0.05)
    for _ in range(1500):
        y_pred = linear_reg_model(x_data).squeeze(-1)
        loss = loss_fn(y_pred, y_data)
        optim.zero_grad()
        loss.backward()
        optim.step()
    # Published: "[iteration 1500] loss: 147.8815", weight [[-1.9478593 -0.20278624 0.39330274]], bias [9.22308]
    assert loss.item() == pytest.approx(147.8815, abs=1e-3)
    assert linear_reg_model.weight.detach().reshape(3).tolist() == pytest.approx([-1.9478593, -0.20278624, 0.39330274],
                                                                                abs=1e-4)
    assert linear_reg_model.bias.item() == pytest.approx(9.22308, abs=1e-4)


def test_bayesian_regression_with_an_autoguide_and_predictive():
    pyro.set_rng_seed(1)
    x_data, y_data = rugged_data()
    model = BayesianRegression(3, 1)
    guide = AutoDiagonalNormal(model)
    adam = pyro.optim.Adam({"lr": 0.03})
    svi = SVI(model, guide, adam, loss=Trace_ELBO())
    pyro.clear_param_store()
    losses = [svi.step(x_data, y_data) / len(x_data) for _ in range(1500)]
    # Published: "[iteration 1401] loss: 1.4581" (the loss per datum settles near 1.46)
    assert np.mean(losses[-200:]) == pytest.approx(1.46, abs=0.03)
    guide.requires_grad_(False)
    loc, scale = pyro.param("AutoDiagonalNormal.loc"), pyro.param("AutoDiagonalNormal.scale")
    assert loc.tolist() == pytest.approx([-2.2371, -1.8097, -0.1691, 0.3791, 9.1823], abs=0.1)
    assert scale.tolist() == pytest.approx([0.0551, 0.1142, 0.0387, 0.0769, 0.0702], rel=0.4)

    quantiles = guide.quantiles([0.25, 0.5, 0.75])
    assert [q.item() for q in quantiles["sigma"]] == pytest.approx([0.9328, 0.9647, 0.9976], abs=0.03)
    assert quantiles["linear.weight"][1].reshape(3).tolist() == pytest.approx([-1.8097, -0.1691, 0.3791], abs=0.1)
    assert [q.item() for q in quantiles["linear.bias"]] == pytest.approx([9.1350, 9.1823, 9.2297], abs=0.06)

    predictive = Predictive(model, guide=guide, num_samples=800, return_sites=("linear.weight", "obs", "_RETURN"))
    samples = predictive(x_data)
    pred_summary = summary(samples)
    mu, y = pred_summary["_RETURN"], pred_summary["obs"]
    assert samples["_RETURN"].shape == samples["obs"].shape == (800, 170)
    assert mu["mean"].shape == (170,) and bool((mu["5%"] < mu["mean"]).all() and (mu["mean"] < mu["95%"]).all())
    # The regression line is close to least squares, and y's 90% band is about +-1.645 sigma wide.
    assert torch.corrcoef(torch.stack([mu["mean"], y_data]))[0, 1].item() == pytest.approx(0.63, abs=0.05)
    assert (y["95%"] - y["5%"]).mean().item() == pytest.approx(2 * 1.645 * 0.965, rel=0.1)
    weight = samples["linear.weight"]
    weight = weight.reshape(weight.shape[0], 3)
    gamma_within_africa = weight[:, 1] + weight[:, 2]
    gamma_outside_africa = weight[:, 1]
    # The tutorial's conclusion: ruggedness raises GDP inside Africa and lowers it outside.
    assert gamma_within_africa.mean().item() == pytest.approx(0.2, abs=0.08)
    assert gamma_outside_africa.mean().item() == pytest.approx(-0.17, abs=0.05)


# --- tensor_shapes -----------------------------------------------------------------------


def check_model(model, guide, loss):  # the tutorial's ``test_model``
    pyro.clear_param_store()
    loss.loss(model, guide)


def test_tensor_shapes_distribution_shapes():
    d = Bernoulli(0.5)
    assert d.batch_shape == () and d.event_shape == ()
    x = d.sample()
    assert x.shape == () and d.log_prob(x).shape == ()

    d = Bernoulli(0.5 * torch.ones(3, 4))
    assert d.batch_shape == (3, 4) and d.event_shape == ()
    x = d.sample()
    assert x.shape == (3, 4) and d.log_prob(x).shape == (3, 4)

    d = Bernoulli(torch.tensor([0.1, 0.2, 0.3, 0.4])).expand([3, 4])
    assert d.batch_shape == (3, 4) and d.event_shape == ()
    x = d.sample()
    assert x.shape == (3, 4) and d.log_prob(x).shape == (3, 4)

    d = MultivariateNormal(torch.zeros(3), torch.eye(3, 3))
    assert d.batch_shape == () and d.event_shape == (3,)
    x = d.sample()
    assert x.shape == (3,) and d.log_prob(x).shape == ()

    d = Bernoulli(0.5 * torch.ones(3, 4)).to_event(1)
    assert d.batch_shape == (3,) and d.event_shape == (4,)
    x = d.sample()
    assert x.shape == (3, 4) and d.log_prob(x).shape == (3,)

    x = pyro.sample("x", Normal(0, 1).expand([10]).to_event(1))
    assert x.shape == (10,)
    with pyro.plate("x_plate", 10):
        x = pyro.sample("x", Normal(0, 1))  # .expand([10]) is automatic
        assert x.shape == (10,)


def model1():
    a = pyro.sample("a", Normal(0, 1))
    b = pyro.sample("b", Normal(torch.zeros(2), 1).to_event(1))
    with pyro.plate("c_plate", 2):
        c = pyro.sample("c", Normal(torch.zeros(2), 1))
    with pyro.plate("d_plate", 3):
        d = pyro.sample("d", Normal(torch.zeros(3, 4, 5), 1).to_event(2))
    assert a.shape == ()       # batch_shape == ()     event_shape == ()
    assert b.shape == (2,)     # batch_shape == ()     event_shape == (2,)
    assert c.shape == (2,)     # batch_shape == (2,)   event_shape == ()
    assert d.shape == (3, 4, 5)  # batch_shape == (3,)   event_shape == (4,5)

    x_axis = pyro.plate("x_axis", 3, dim=-2)
    y_axis = pyro.plate("y_axis", 2, dim=-3)
    with x_axis:
        x = pyro.sample("x", Normal(0, 1))
    with y_axis:
        y = pyro.sample("y", Normal(0, 1))
    with x_axis, y_axis:
        xy = pyro.sample("xy", Normal(0, 1))
        z = pyro.sample("z", Normal(0, 1).expand([5]).to_event(1))
    assert x.shape == (3, 1)        # batch_shape == (3,1)     event_shape == ()
    assert y.shape == (2, 1, 1)     # batch_shape == (2,1,1)   event_shape == ()
    assert xy.shape == (2, 3, 1)    # batch_shape == (2,3,1)   event_shape == ()
    assert z.shape == (2, 3, 1, 5)  # batch_shape == (2,3,1)   event_shape == (5,)


# The tutorial's printed table, as Pyro prints it.
MODEL1_SHAPES = """\
Trace Shapes:
 Param Sites:
Sample Sites:
       a dist       |
        value       |
     log_prob       |
       b dist       | 2
        value       | 2
     log_prob       |
 c_plate dist       |
        value     2 |
     log_prob       |
       c dist     2 |
        value     2 |
     log_prob     2 |
 d_plate dist       |
        value     3 |
     log_prob       |
       d dist     3 | 4 5
        value     3 | 4 5
     log_prob     3 |
  x_axis dist       |
        value     3 |
     log_prob       |
  y_axis dist       |
        value     2 |
     log_prob       |
       x dist   3 1 |
        value   3 1 |
     log_prob   3 1 |
       y dist 2 1 1 |
        value 2 1 1 |
     log_prob 2 1 1 |
      xy dist 2 3 1 |
        value 2 3 1 |
     log_prob 2 3 1 |
       z dist 2 3 1 | 5
        value 2 3 1 | 5
     log_prob 2 3 1 |"""


def blocks(table):
    """The table's rows grouped by site (a ``dist`` row and the rows under it)."""
    lines = table.splitlines()
    grouped, current = {}, None
    for line in lines[3:]:
        if line.split()[1:2] == ["dist"]:
            current = line.split()[0]
            grouped[current] = []
        grouped[current].append(line.split())
    return lines[:3], grouped


def test_tensor_shapes_plates_and_format_shapes():
    check_model(model1, model1, Trace_ELBO())
    trace = poutine.trace(model1).get_trace()
    trace.compute_log_prob()  # optional, but allows printing of log_prob shapes
    table = trace.format_shapes()
    # Every site's rows are Pyro's; a plate built once and entered twice (x_axis, y_axis) is
    # listed before its first site rather than where it was built.
    assert blocks(table) == blocks(MODEL1_SHAPES)
    assert table.splitlines()[:21] == MODEL1_SHAPES.splitlines()[:21]


def test_tensor_shapes_subsampling_inside_a_plate():
    data = torch.arange(100.)

    def model2():
        mean = pyro.param("mean", torch.zeros(len(data)))
        with pyro.plate("data", len(data), subsample_size=10) as ind:
            assert len(ind) == 10    # ind is a LongTensor that indexes the subsample.
            batch = data[ind]        # Select a minibatch of data.
            mean_batch = mean[ind]   # Take care to select the relevant per-datum parameters.
            # Do stuff with batch:
            x = pyro.sample("x", Normal(mean_batch, 1), obs=batch)
            assert len(x) == 10

    check_model(model2, guide=lambda: None, loss=Trace_ELBO())


width, height = 8, 10
sparse_pixels = torch.LongTensor([[3, 2], [3, 5], [3, 9], [7, 1]])


def fun(observe, enumerated):
    p_x = pyro.param("p_x", torch.tensor(0.1), constraint=constraints.unit_interval)
    p_y = pyro.param("p_y", torch.tensor(0.1), constraint=constraints.unit_interval)
    x_axis = pyro.plate('x_axis', width, dim=-2)
    y_axis = pyro.plate('y_axis', height, dim=-1)

    # Note that the shapes of these sites depend on whether Pyro is enumerating.
    with x_axis:
        x_active = pyro.sample("x_active", Bernoulli(p_x))
    with y_axis:
        y_active = pyro.sample("y_active", Bernoulli(p_y))
    if enumerated:
        assert x_active.shape == (2, 1, 1)
        assert y_active.shape == (2, 1, 1, 1)
    else:
        assert x_active.shape == (width, 1)
        assert y_active.shape == (height,)

    # The first trick is to broadcast. This works with or without enumeration.
    p = 0.1 + 0.5 * x_active * y_active
    if enumerated:
        assert p.shape == (2, 2, 1, 1)
    else:
        assert p.shape == (width, height)
    dense_pixels = p.new_zeros(broadcast_shape(p.shape, (width, height)))

    # The second trick is to index using ellipsis slicing.
    for x, y in sparse_pixels:
        dense_pixels[..., x, y] = 1
    if enumerated:
        assert dense_pixels.shape == (2, 2, width, height)
    else:
        assert dense_pixels.shape == (width, height)

    with x_axis, y_axis:
        if observe:
            pyro.sample("pixels", Bernoulli(p), obs=dense_pixels)


def test_tensor_shapes_parallelizable_code_without_enumeration():
    check_model(lambda: fun(True, False), lambda: fun(False, False), Trace_ELBO())


@needs_enumeration
def test_tensor_shapes_parallelizable_code_with_enumeration():
    # As in the tutorial (one global `enumerated = True`): the model sees the guide's enumerated values.
    check_model(lambda: fun(True, True), pyro.infer.config_enumerate(lambda: fun(False, True), "parallel"),
                pyro.infer.TraceEnum_ELBO(max_plate_nesting=2))


@needs_enumeration
def test_tensor_shapes_enumerated_dims():
    @pyro.infer.config_enumerate
    def model3():
        p = pyro.param("p", torch.arange(6.) / 6)
        locs = pyro.param("locs", torch.tensor([-1., 1.]))

        a = pyro.sample("a", Categorical(torch.ones(6) / 6))
        b = pyro.sample("b", Bernoulli(p[a]))  # Note this depends on a.
        with pyro.plate("c_plate", 4):
            c = pyro.sample("c", Bernoulli(0.3))
            with pyro.plate("d_plate", 5):
                d = pyro.sample("d", Bernoulli(0.4))
                e_loc = locs[d.long()].unsqueeze(-1)
                e_scale = torch.arange(1., 8.)
                e = pyro.sample("e", Normal(e_loc, e_scale).to_event(1))  # Note this depends on d.

        #                   enumerated|batch|event dims
        assert a.shape == (6, 1, 1)  # Six enumerated values of the Categorical.
        assert b.shape == (2, 1, 1, 1)  # Two enumerated Bernoullis, unexpanded.
        assert c.shape == (2, 1, 1, 1, 1)  # Only two Bernoullis, unexpanded.
        assert d.shape == (2, 1, 1, 1, 1, 1)  # Only two Bernoullis, unexpanded.
        assert e.shape == (2, 1, 1, 1, 5, 4, 7)  # This is sampled and depends on d.
        assert e_loc.shape == (2, 1, 1, 1, 1, 1, 1,)
        assert e_scale.shape == (7,)

    check_model(model3, model3, pyro.infer.TraceEnum_ELBO(max_plate_nesting=2))
    trace = poutine.trace(poutine.enum(model3, first_available_dim=-3)).get_trace()
    trace.compute_log_prob()
    assert trace.nodes["d"]["log_prob"].shape == (2, 1, 1, 1, 5, 4)


@needs_enumeration
@pytest.mark.parametrize("broadcasting", ["none", "full", "partial"])
def test_tensor_shapes_automatic_broadcasting_inside_plates(broadcasting):
    num_particles = 100

    def sample_pixel_locations(p_x, p_y, x_axis, y_axis):
        with x_axis:
            fn = {"none": Bernoulli(p_x).expand([num_particles, width, 1]), "full": Bernoulli(p_x),
                  "partial": Bernoulli(p_x).expand([width, 1])}[broadcasting]
            x_active = pyro.sample("x_active", fn)
        with y_axis:
            fn = {"none": Bernoulli(p_y).expand([num_particles, 1, height]), "full": Bernoulli(p_y),
                  "partial": Bernoulli(p_y).expand([height])}[broadcasting]
            y_active = pyro.sample("y_active", fn)
        return x_active, y_active

    def fun2(observe):
        p_x = pyro.param("p_x", torch.tensor(0.1), constraint=constraints.unit_interval)
        p_y = pyro.param("p_y", torch.tensor(0.1), constraint=constraints.unit_interval)
        x_axis = pyro.plate('x_axis', width, dim=-2)
        y_axis = pyro.plate('y_axis', height, dim=-1)
        with pyro.plate("num_particles", 100, dim=-3):
            x_active, y_active = sample_pixel_locations(p_x, p_y, x_axis, y_axis)
            assert x_active.shape == (2, 1, 1, 1)
            assert y_active.shape == (2, 1, 1, 1, 1)
            p = 0.1 + 0.5 * x_active * y_active
            assert p.shape == (2, 2, 1, 1, 1)
            dense_pixels = p.new_zeros(broadcast_shape(p.shape, (width, height)))
            for x, y in sparse_pixels:
                dense_pixels[..., x, y] = 1
            assert dense_pixels.shape == (2, 2, 1, width, height)
            with x_axis, y_axis:
                if observe:
                    pyro.sample("pixels", Bernoulli(p), obs=dense_pixels)

    guide = pyro.infer.config_enumerate(lambda: fun2(False))
    check_model(lambda: fun2(True), guide, pyro.infer.TraceEnum_ELBO(max_plate_nesting=3))


# --- svi_part_iii ---------------------------------------------------------------------------


def param_abs_error(name, target):
    return torch.sum(torch.abs(target - pyro.param(name))).item()


class BernoulliBetaExample:
    def __init__(self, max_steps):
        # the maximum number of inference steps we do
        self.max_steps = max_steps
        # the two hyperparameters for the beta prior
        self.alpha0 = 10.0
        self.beta0 = 10.0
        # the dataset consists of six 1s and four 0s
        self.data = torch.zeros(10)
        self.data[0:6] = torch.ones(6)
        self.n_data = self.data.size(0)
        # compute the alpha parameter of the exact beta posterior
        self.alpha_n = self.data.sum() + self.alpha0
        # compute the beta parameter of the exact beta posterior
        self.beta_n = - self.data.sum() + torch.tensor(self.beta0 + self.n_data)
        # initial values of the two variational parameters
        self.alpha_q_0 = 15.0
        self.beta_q_0 = 15.0

    def model(self, use_decaying_avg_baseline):
        f = pyro.sample("latent_fairness", dist.Beta(self.alpha0, self.beta0))
        with pyro.plate("data_plate"):
            pyro.sample("obs", dist.Bernoulli(f), obs=self.data)

    def guide(self, use_decaying_avg_baseline):
        alpha_q = pyro.param("alpha_q", torch.tensor(self.alpha_q_0), constraint=constraints.positive)
        beta_q = pyro.param("beta_q", torch.tensor(self.beta_q_0), constraint=constraints.positive)
        baseline_dict = {'use_decaying_avg_baseline': use_decaying_avg_baseline, 'baseline_beta': 0.90}
        pyro.sample("latent_fairness", NonreparameterizedBeta(alpha_q, beta_q), infer=dict(baseline=baseline_dict))

    def do_inference(self, use_decaying_avg_baseline, tolerance=0.80):
        pyro.clear_param_store()
        optimizer = pyro.optim.Adam({"lr": .0005, "betas": (0.93, 0.999)})
        svi = SVI(self.model, self.guide, optimizer, loss=TraceGraph_ELBO())
        for k in range(self.max_steps):  # noqa: B007  (k is the tutorial's step count, used below)
            svi.step(use_decaying_avg_baseline)
            alpha_error = param_abs_error("alpha_q", self.alpha_n)
            beta_error = param_abs_error("beta_q", self.beta_n)
            if alpha_error < tolerance and beta_error < tolerance:
                break
        return k, alpha_error, beta_error


def test_svi_part_iii_decaying_average_baseline_needs_fewer_steps():
    """The tutorial's experiment. Its published run (Pyro 1.4: 1932 steps with the baseline, 4908
    without) predates Pyro's current RNG use; Pyro 1.9 with ``pyro.set_rng_seed(0)`` gives 123 and
    959 steps with final errors (0.7985, 0.7868) and (0.7709, 0.7989), and so does this run."""
    pyro.set_rng_seed(0)
    bbe = BernoulliBetaExample(max_steps=10000)
    with_baseline = bbe.do_inference(use_decaying_avg_baseline=True)
    without = bbe.do_inference(use_decaying_avg_baseline=False)
    assert with_baseline[0] < without[0] < 10000 - 1  # both reach the exact posterior, the baseline faster
    assert max(with_baseline[1:] + without[1:]) < 0.8
    if torch.__version__.startswith("2.13."):  # the same draws as Pyro's for the pinned torch
        assert with_baseline == (123, pytest.approx(0.7985, abs=1e-3), pytest.approx(0.7868, abs=1e-3))
        assert without == (959, pytest.approx(0.7709, abs=1e-3), pytest.approx(0.7989, abs=1e-3))
