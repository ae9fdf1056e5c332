"""Tests for causalppl.handlers: one section per handler."""

import math

import pytest
import torch

import causalppl as cp
from causalppl import handlers
from causalppl.handlers import UnknownSiteError


def normal_logpdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)


def chain():
    """z -> x, the running example."""
    z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
    return cp.sample("x", cp.dist.Normal(z, 0.5))


def confounded(n):
    """z -> x, z -> y, x -> y: z confounds the effect of x on y."""
    with cp.plate("n", n):
        z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
        x = cp.sample("x", cp.dist.Normal(z, 1.0))
        return cp.sample("y", cp.dist.Normal(x + 2.0 * z, 0.5))


# --- trace --------------------------------------------------------------------------------


def test_trace_nodes_have_the_documented_keys():
    cp.set_rng_seed(0)

    def model():
        loc = cp.param("loc", torch.tensor(0.5))
        with cp.plate("rows", 3):
            return cp.sample("x", cp.dist.Normal(loc, 1.0))

    tr = handlers.trace(model).get_trace()
    assert list(tr.nodes) == ["_INPUT", "loc", "x", "_RETURN"]
    assert tr.nodes["_RETURN"]["type"] == "return" and tr.nodes["_RETURN"]["value"] is tr.nodes["x"]["value"]
    site = tr.nodes["x"]
    for key in ("type", "name", "fn", "value", "is_observed", "infer", "scale", "cond_indep_stack"):
        assert key in site, key
    assert site["type"] == "sample" and site["name"] == "x"
    assert site["value"].shape == (3,) and site["scale"] == 1.0 and site["infer"] == {}
    assert [frame.name for frame in site["cond_indep_stack"]] == ["rows"]
    assert tr.nodes["loc"]["type"] == "param"


def test_trace_param_only_records_params_only():
    def model():
        a = cp.param("a", torch.tensor(1.0))
        b = cp.param("b", torch.tensor(2.0), constraint=cp.constraints.positive)
        return cp.sample("x", cp.dist.Normal(a, b))

    with cp.trace(param_only=True) as capture:
        model()
    assert list(capture.trace.nodes) == ["a", "b"]
    leaves = [site["value"].unconstrained() for site in capture.trace.nodes.values()]
    assert all(leaf.is_leaf and leaf.requires_grad for leaf in leaves)


def test_trace_messenger_alias_as_context_manager():
    cp.set_rng_seed(1)
    assert handlers.TraceMessenger is handlers.trace
    with handlers.TraceMessenger() as tracer:
        x = chain()
    assert list(tracer.trace.nodes) == ["z", "x"]
    assert torch.equal(tracer.trace.nodes["x"]["value"], x)
    # A second use starts a fresh trace.
    with tracer:
        cp.sample("other", cp.dist.Normal(0.0, 1.0))
    assert list(tracer.trace.nodes) == ["other"]


# --- condition ----------------------------------------------------------------------------


def test_condition_marks_observed_and_scores_the_observation():
    cp.set_rng_seed(2)
    conditioned = cp.condition(chain, data={"x": torch.tensor(0.7)})
    tr = handlers.trace(conditioned).get_trace()
    assert tr.nodes["x"]["is_observed"] and not tr.nodes["z"]["is_observed"]
    assert tr.nodes["x"]["value"].item() == pytest.approx(0.7)
    z = tr.nodes["z"]["value"].item()
    expected = normal_logpdf(z, 0.0, 1.0) + normal_logpdf(0.7, z, 0.5)
    assert tr.log_prob_sum().item() == pytest.approx(expected, abs=1e-5)


def test_condition_on_every_site_gives_the_joint_density():
    tr = handlers.trace(cp.condition(chain, data={"z": 0.3, "x": -0.2})).get_trace()
    expected = normal_logpdf(0.3, 0.0, 1.0) + normal_logpdf(-0.2, 0.3, 0.5)
    assert tr.log_prob_sum().item() == pytest.approx(expected, abs=1e-5)
    assert tr.observation_nodes == ["z", "x"] and tr.stochastic_nodes == []


# --- do -----------------------------------------------------------------------------------


def test_do_fixes_value_without_log_prob_and_downstream_sees_it():
    cp.set_rng_seed(3)

    def model():
        z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
        x = cp.sample("x", cp.dist.Normal(z, 1.0))
        return cp.sample("y", cp.dist.Normal(3.0 * x, 0.1))

    tr = handlers.trace(cp.do(model, data={"x": torch.tensor(2.0)})).get_trace()
    site = tr.nodes["x"]
    assert site["value"].item() == 2.0 and site["intervened"] and not site["is_observed"]
    assert "x" not in tr.stochastic_nodes and "x" not in tr.observation_nodes
    z, y = tr.nodes["z"]["value"].item(), tr.nodes["y"]["value"].item()
    assert tr.nodes["y"]["fn"].loc.item() == pytest.approx(6.0)  # downstream uses x = 2
    expected = normal_logpdf(z, 0.0, 1.0) + normal_logpdf(y, 6.0, 0.1)  # no term for x
    assert tr.log_prob_sum().item() == pytest.approx(expected, abs=1e-4)


def test_do_broadcasts_a_scalar_inside_a_plate():
    cp.set_rng_seed(4)
    y = cp.do(confounded, data={"x": 1.0})(7)
    assert y.shape == (7,)


def test_interventional_and_conditional_means_differ_in_a_confounded_model():
    # y = x + 2 z + noise, x = z + noise.  E[y | do(x=1)] = 1 + 2 E[z] = 1, while
    # E[y | x=1] = 1 + 2 E[z | x=1] = 1 + 2 * 0.5 = 2.
    cp.set_rng_seed(5)
    n = 40_000

    y_do = cp.do(confounded, data={"x": 1.0})(n)
    # Var(y | do(x=1)) = 4 Var(z) + 0.25.
    se_do = math.sqrt(4.0 + 0.25) / math.sqrt(n)
    assert y_do.mean().item() == pytest.approx(1.0, abs=5 * se_do)

    # E[y | x=1] by self-normalised importance sampling with the prior as proposal:
    # the weight of each row is p(x=1 | z).
    tr = handlers.trace(cp.condition(confounded, data={"x": 1.0})).get_trace(n)
    log_w = tr.nodes["x"]["fn"].log_prob(tr.nodes["x"]["value"])
    w = torch.softmax(log_w, 0)
    ess = 1.0 / (w**2).sum().item()
    y = tr.nodes["y"]["value"]
    # Var(y | x=1) = 4 Var(z | x=1) + 0.25 = 4 * 0.5 + 0.25.
    se_cond = math.sqrt(2.25) / math.sqrt(ess)
    y_cond = (w * y).sum().item()
    assert y_cond == pytest.approx(2.0, abs=5 * se_cond)
    assert y_cond - y_do.mean().item() > 10 * (se_do + se_cond)


def test_do_composes_with_condition_in_either_order():
    cp.set_rng_seed(6)

    def model():
        z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
        x = cp.sample("x", cp.dist.Normal(z, 1.0))
        return cp.sample("y", cp.dist.Normal(x + z, 0.5))

    observed = {"z": torch.tensor(0.4), "y": torch.tensor(1.0)}
    first = cp.condition(cp.do(model, data={"x": 2.0}), data=observed)
    second = cp.do(cp.condition(model, data=observed), data={"x": 2.0})
    expected = normal_logpdf(0.4, 0.0, 1.0) + normal_logpdf(1.0, 2.4, 0.5)
    for fn in (first, second):
        tr = handlers.trace(fn).get_trace()
        assert tr.nodes["x"]["intervened"] and tr.nodes["y"]["is_observed"]
        assert tr.nodes["x"]["value"].item() == 2.0
        assert tr.log_prob_sum().item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("handler", [cp.condition, cp.do])
def test_unknown_keys_raise_naming_the_key_and_the_known_sites(handler):
    with pytest.raises(KeyError) as info:
        handler(chain, data={"zz": 1.0, "x": 0.0})()
    assert isinstance(info.value, UnknownSiteError)
    message = str(info.value)
    assert "'zz'" in message and "z" in message and "x" in message
    assert "sites are: z, x" in message


def test_condition_data_must_be_a_dict():
    with pytest.raises(TypeError, match="dict"):
        cp.condition(chain, data=[1.0])


# --- replay -------------------------------------------------------------------------------


def test_replay_reuses_latent_values_but_not_observations():
    cp.set_rng_seed(7)

    def guide():
        cp.sample("z", cp.dist.Normal(5.0, 0.1))
        cp.sample("x", cp.dist.Normal(-5.0, 0.1))

    guide_trace = handlers.trace(guide).get_trace()
    conditioned = cp.condition(chain, data={"x": 0.25})
    tr = handlers.trace(handlers.replay(conditioned, trace=guide_trace)).get_trace()
    assert torch.equal(tr.nodes["z"]["value"], guide_trace.nodes["z"]["value"])
    assert tr.nodes["x"]["value"].item() == 0.25  # observed: not replayed
    with pytest.raises(ValueError, match="trace"):
        handlers.replay(chain)


# --- block --------------------------------------------------------------------------------


def traced_names(fn):
    return [name for name in handlers.trace(fn).get_trace().nodes if name not in ("_INPUT", "_RETURN")]


def three_sites():
    cp.param("p", torch.tensor(1.0))
    cp.sample("a", cp.dist.Normal(0.0, 1.0))
    cp.sample("b", cp.dist.Normal(0.0, 1.0))


def test_block_hides_everything_by_default():
    cp.set_rng_seed(8)
    assert traced_names(handlers.block(three_sites)) == []


def test_block_hide_expose_and_types():
    cp.set_rng_seed(9)
    assert traced_names(handlers.block(three_sites, hide=["a"])) == ["p", "b"]
    assert traced_names(handlers.block(three_sites, expose=["a"])) == ["a"]
    assert traced_names(handlers.block(three_sites, hide_types=["param"])) == ["a", "b"]
    assert traced_names(handlers.block(three_sites, expose_types=["param"])) == ["p"]
    assert traced_names(handlers.block(three_sites, hide_fn=lambda msg: msg["name"] == "b")) == ["p", "a"]


def with_observation():
    three_sites()
    cp.sample("x", cp.dist.Normal(0.0, 1.0), obs=torch.tensor(0.5))


def test_block_names_decide_before_types_and_observed_sites_have_type_observe():
    cp.set_rng_seed(10)
    assert traced_names(handlers.block(with_observation, hide_types=["observe"])) == ["p", "a", "b"]
    assert traced_names(handlers.block(with_observation, expose_types=["sample"])) == ["a", "b"]
    assert traced_names(handlers.block(with_observation, expose=["x"], hide_types=["observe"])) == ["x"]
    assert traced_names(handlers.block(with_observation, hide_all=False)) == ["p", "a", "b", "x"]
    # a rule given as a function overrides the lists
    assert traced_names(handlers.block(with_observation, hide_fn=lambda m: m["name"] == "a", expose=["a"])) \
        == ["p", "b", "x"]
    assert traced_names(handlers.block(with_observation, expose_fn=lambda m: m["name"] == "a", hide=["a"])) \
        == ["a"]
    with pytest.raises(ValueError, match=r"cannot both hide and expose site\(s\) \['a'\]"):
        handlers.block(with_observation, hide=["a"], expose=["a", "b"])


def test_block_does_not_hide_from_handlers_inside_it():
    with handlers.block():
        with handlers.trace() as inner:
            three_sites()
    assert list(inner.trace.nodes) == ["p", "a", "b"]


# --- seed ---------------------------------------------------------------------------------


def test_seed_gives_the_same_draws():
    first = handlers.trace(handlers.seed(chain, rng_seed=42)).get_trace()
    second = handlers.trace(handlers.seed(chain, rng_seed=42)).get_trace()
    third = handlers.trace(handlers.seed(chain, rng_seed=43)).get_trace()
    for name in ("z", "x"):
        assert torch.equal(first.nodes[name]["value"], second.nodes[name]["value"])
    assert not torch.equal(first.nodes["z"]["value"], third.nodes["z"]["value"])


def test_seed_restores_the_global_rng_afterwards():
    cp.set_rng_seed(10)
    expected = torch.rand(3)
    cp.set_rng_seed(10)
    handlers.seed(chain, rng_seed=0)()
    assert torch.equal(torch.rand(3), expected)


# --- scale, mask, substitute ----------------------------------------------------------------


def test_scale_multiplies_log_densities():
    tr = handlers.trace(handlers.scale(cp.condition(chain, data={"z": 0.1, "x": 0.3}), scale=3.0)).get_trace()
    expected = 3.0 * (normal_logpdf(0.1, 0.0, 1.0) + normal_logpdf(0.3, 0.1, 0.5))
    assert tr.nodes["x"]["scale"] == 3.0
    assert tr.log_prob_sum().item() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="positive"):
        handlers.scale(chain, scale=0.0)


def test_mask_drops_masked_entries():
    data = torch.tensor([0.0, 1.0, 2.0])

    def model():
        with cp.plate("rows", 3):
            cp.sample("obs", cp.dist.Normal(0.0, 1.0), obs=data)

    keep = torch.tensor([True, False, True])
    tr = handlers.trace(handlers.mask(model, mask=keep)).get_trace()
    expected = normal_logpdf(0.0, 0.0, 1.0) + normal_logpdf(2.0, 0.0, 1.0)
    assert tr.log_prob_sum().item() == pytest.approx(expected, abs=1e-5)
    tr = handlers.trace(handlers.mask(model, mask=False)).get_trace()
    assert tr.log_prob_sum().item() == 0.0


def test_substitute_replaces_params_and_latents_not_observations():
    def model():
        loc = cp.param("loc", torch.tensor(0.0))
        z = cp.sample("z", cp.dist.Normal(loc, 1.0))
        return cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.tensor(1.0))

    tr = handlers.trace(handlers.substitute(model, data={"loc": 3.0, "z": 2.5, "x": -9.0})).get_trace()
    assert tr.nodes["loc"]["value"].item() == 3.0
    assert tr.nodes["z"]["value"].item() == 2.5
    assert tr.nodes["x"]["value"].item() == 1.0
    assert tr.nodes["z"]["fn"].loc.item() == 3.0

    by_fn = handlers.substitute(model, substitute_fn=lambda msg: 7.0 if msg["name"] == "z" else None)
    tr = handlers.trace(by_fn).get_trace()
    assert tr.nodes["z"]["value"].item() == 7.0 and tr.nodes["loc"]["value"].item() == 0.0
    with pytest.raises(ValueError, match="substitute"):
        handlers.substitute(model)


# --- uncondition, infer_config, method decorators, Pyro-style messengers -------------------


def test_uncondition_samples_observed_sites_and_keeps_the_observation():
    cp.set_rng_seed(13)

    def model():
        with cp.plate("rows", 1000):
            return cp.sample("y", cp.dist.Normal(0.0, 1.0), obs=torch.full((1000,), 50.0))

    tr = handlers.trace(handlers.uncondition(model)).get_trace()
    site = tr.nodes["y"]
    assert not site["is_observed"] and site["infer"]["was_observed"]
    assert bool((site["infer"]["obs"] == 50.0).all())
    assert abs(site["value"].mean().item()) < 0.15  # 1000 draws from N(0, 1): se ~0.03
    assert "y" in tr.stochastic_nodes


def test_infer_config_adds_to_each_sites_infer_dict():
    def model():
        cp.param("p", torch.tensor(0.5))
        cp.sample("z", cp.dist.Bernoulli(0.5), infer={"keep": 1})
        cp.sample("x", cp.dist.Normal(0.0, 1.0))

    def config(msg):
        return {"enumerate": "parallel"} if msg["name"] == "z" else {}

    tr = handlers.trace(handlers.infer_config(model, config_fn=config)).get_trace()
    assert tr.nodes["z"]["infer"] == {"keep": 1, "enumerate": "parallel"}
    assert tr.nodes["x"]["infer"] == {} and tr.nodes["p"]["infer"] == {}
    with pytest.raises(TypeError, match="config_fn"):
        handlers.infer_config(model, config_fn={"enumerate": "parallel"})


def test_handlers_decorate_methods():
    class Model:
        offset = 3.0

        @handlers.condition(data={"x": torch.tensor(1.0)})
        def __call__(self, shift):
            x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
            return x + self.offset + shift

        @handlers.scale(scale=2.0)
        def scored(self):
            cp.sample("y", cp.dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))

    m = Model()
    assert m(0.5).item() == 4.5
    tr = handlers.trace(m.scored).get_trace()
    assert tr.nodes["y"]["scale"] == 2.0
    assert isinstance(Model.__dict__["scored"], handlers.scale)


def test_pyro_style_messenger_subclasses_work():
    class Doubler(cp.handlers.messenger.Messenger):
        def _pyro_sample(self, msg):
            if msg["name"] == "x":
                msg["value"] = torch.tensor(2.0)

        def _pyro_post_sample(self, msg):
            msg["infer"]["seen"] = True

    class Counter(cp.handlers.messenger.Messenger):
        def __init__(self, fn=None):
            super().__init__(fn)
            self.types = []

        def _process_message(self, msg):
            self.types.append(msg["type"])

    def model():
        cp.param("p", torch.tensor(1.0))
        return cp.sample("x", cp.dist.Normal(0.0, 1.0)) + cp.sample("w", cp.dist.Normal(0.0, 1.0))

    assert cp.handlers.Messenger is cp.handlers.messenger.Messenger is cp.runtime.Messenger
    tr = handlers.trace(Doubler(model)).get_trace()
    assert tr.nodes["x"]["value"].item() == 2.0 and tr.nodes["w"]["infer"] == {"seen": True}
    counter = Counter()
    with counter:
        model()
    assert counter.types == ["param", "sample", "sample"]


def test_dense_trace_links_each_site_to_earlier_ones_except_across_passes_of_a_sequential_plate():
    def model():
        shared = cp.sample("shared", cp.dist.Normal(0.0, 1.0))
        for i in cp.plate("outer", 2):
            first = cp.sample(f"a_{i}", cp.dist.Normal(shared, 1.0))
            with cp.plate("rows", 3):
                cp.sample(f"b_{i}", cp.dist.Normal(first, 1.0))

    tr = handlers.trace(model, graph_type="dense").get_trace()
    assert tr.graph_type == "dense"
    assert set(tr.edges) == {
        ("shared", "a_0"), ("shared", "b_0"), ("a_0", "b_0"),
        ("shared", "a_1"), ("shared", "b_1"), ("a_1", "b_1"),
    }
    assert handlers.trace(model).get_trace().edges == []  # flat traces keep no edges
    with pytest.raises(ValueError, match="graph_type"):
        handlers.trace(model, graph_type="sparse").get_trace()


def two_draws():
    a = cp.sample("a", cp.dist.Beta(1.0, 1.0))
    cp.sample("b", cp.dist.Bernoulli(a))


def test_block_and_replay_wrapped_models_pickle_and_rerun_the_same():
    import io
    import pickle

    for wrapped in (handlers.block(two_draws, hide=["a"]),
                    handlers.replay(two_draws, trace=handlers.trace(two_draws).get_trace())):
        buffer = io.BytesIO()
        torch.save(wrapped, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)
        buffer.seek(0)
        restored = torch.load(buffer, weights_only=False)
        cp.set_rng_seed(4)
        again = handlers.trace(restored).get_trace()
        cp.set_rng_seed(4)
        first = handlers.trace(wrapped).get_trace()
        assert list(again.nodes) == list(first.nodes)
        assert all(torch.equal(again.nodes[n]["value"], first.nodes[n]["value"]) for n in first.stochastic_nodes)


def test_get_mask_unwrap_broadcast_and_a_non_callable_fn_is_refused_with_a_hint():
    assert handlers.get_mask() is None
    with handlers.mask(mask=True), handlers.mask(mask=False):
        assert handlers.get_mask() is False
    with handlers.mask(mask=torch.tensor([True, False])), handlers.mask(mask=torch.tensor([True, True])):
        assert handlers.get_mask().tolist() == [True, False]
    wrapped = handlers.broadcast(handlers.scale(three_sites, scale=2.0))
    assert handlers.unwrap(wrapped) is three_sites
    assert traced_names(wrapped) == ["p", "a", "b"]
    with pytest.raises(ValueError, match=r"mask: False is not callable.*mask\(mask=\.\.\.\)"):
        with handlers.mask(False):
            pass


def test_deprecated_plate_names_still_run_and_say_so():
    with pytest.warns(DeprecationWarning, match="cp.plate"):
        with cp.iarange("rows", 3) as rows:
            z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
    assert rows.tolist() == [0, 1, 2] and z.shape == (3,)
    with pytest.warns(DeprecationWarning):
        assert list(cp.irange("steps", 2)) == [0, 1]
    assert cp.barrier(z) is z


# --- lift ---------------------------------------------------------------------------------


def gaussian_mle(data):
    """A point estimate of loc; lifted, loc becomes a latent with a prior."""
    loc = cp.param("loc", torch.tensor(0.0))
    scale = cp.param("scale", torch.tensor(1.0), constraint=cp.constraints.positive)
    with cp.plate("data", len(data)):
        cp.sample("obs", cp.dist.Normal(loc, scale), obs=data)
    return loc


def test_lift_turns_named_params_into_samples_from_their_priors():
    cp.clear_param_store()
    lifted = handlers.lift(gaussian_mle, prior={"loc": cp.dist.Normal(3.0, 1e-3)})
    tr = handlers.trace(lifted).get_trace(torch.zeros(4))
    assert tr.nodes["loc"]["type"] == "sample" and not tr.nodes["loc"]["is_observed"]
    assert tr.nodes["loc"]["value"].item() == pytest.approx(3.0, abs=0.01)
    assert tr.nodes["scale"]["type"] == "param"  # not in the prior dict: still a param
    assert sorted(cp.get_param_store().keys()) == ["scale"]  # loc was never created
    assert "loc" in tr.stochastic_nodes


def test_lift_with_one_distribution_lifts_every_param_and_reads_once_per_run():
    def twice():
        return cp.param("w", torch.tensor(0.0)) + cp.param("w", torch.tensor(0.0))

    tr = handlers.trace(handlers.lift(twice, prior=cp.dist.Normal(0.0, 1.0))).get_trace()
    assert tr.nodes["w"]["type"] == "sample"
    assert tr.nodes["_RETURN"]["value"].item() == pytest.approx(2 * tr.nodes["w"]["value"].item())
    with pytest.raises(ValueError, match="lift needs a prior"):
        handlers.lift(twice)


def test_lift_gives_the_conjugate_posterior_under_svi():
    """loc ~ N(0, 1) lifted from a param; data ~ N(loc, 1): the posterior is N(sum/(n+1), 1/(n+1))."""
    cp.clear_param_store()
    cp.set_rng_seed(0)
    data = torch.tensor([0.5, 1.5, 2.0, 1.0])

    def model(data):
        loc = cp.param("loc", torch.tensor(0.0))
        with cp.plate("data", len(data)):
            cp.sample("obs", cp.dist.Normal(loc, 1.0), obs=data)

    lifted = handlers.lift(model, prior={"loc": cp.dist.Normal(0.0, 1.0)})
    guide = cp.infer.autoguide.AutoLaplaceApproximation(lifted)
    svi = cp.infer.SVI(lifted, guide, cp.optim.Adam({"lr": 0.05}), cp.infer.Trace_ELBO())
    for _ in range(300):
        svi.step(data)
    posterior = guide.laplace_approximation(data).get_posterior()
    assert posterior.loc.item() == pytest.approx(data.sum().item() / 5, abs=1e-3)
    assert posterior.covariance_matrix.item() == pytest.approx(1 / 5, rel=1e-4)


def test_lift_matches_params_of_torch_modules_by_their_own_name():
    net = torch.nn.Linear(2, 1)

    def model():
        cp.module("net", net)
        return cp.param("net$$$weight")

    prior = {"weight": cp.dist.Normal(torch.zeros(1, 2), 1.0).to_event(2)}
    tr = handlers.trace(handlers.lift(model, prior=prior)).get_trace()
    assert tr.nodes["net$$$weight"]["type"] == "sample" and tr.nodes["net$$$bias"]["type"] == "param"


# --- reparam ------------------------------------------------------------------------------

from causalppl.infer.reparam import LocScaleReparam, TransformReparam  # noqa: E402


def test_loc_scale_reparam_draws_standard_noise_and_keeps_the_distribution():
    cp.set_rng_seed(1)

    def model():
        with cp.plate("n", 20000):
            return cp.sample("x", cp.dist.StudentT(5.0, 3.0, 2.0))

    reparam_model = handlers.reparam(model, config={"x": LocScaleReparam(centered=0.0)})
    tr = handlers.trace(reparam_model).get_trace()
    noise, x = tr.nodes["x_decentered"], tr.nodes["x"]
    assert isinstance(noise["fn"], cp.dist.StudentT)
    assert noise["fn"].loc.unique().tolist() == [0.0] and noise["fn"].scale.unique().tolist() == [1.0]
    assert noise["fn"].df.unique().tolist() == [5.0]  # the shape parameter is kept
    assert torch.allclose(x["value"], 3.0 + 2.0 * noise["value"])
    assert x["is_observed"] and float(x["fn"].log_prob(x["value"]).abs().sum()) == 0.0
    assert [frame.name for frame in noise["cond_indep_stack"]] == ["n"]
    # StudentT(5, 3, 2): mean 3, sd 2 * sqrt(5 / 3)
    assert x["value"].mean().item() == pytest.approx(3.0, abs=0.05)
    assert x["value"].std().item() == pytest.approx(2.0 * (5 / 3) ** 0.5, rel=0.05)


def test_loc_scale_reparam_partial_and_learned_centering():
    def model():
        return cp.sample("x", cp.dist.Normal(4.0, 3.0).expand([2]).to_event(1))

    tr = handlers.trace(handlers.reparam(model, config={"x": LocScaleReparam(centered=0.5)})).get_trace()
    noise = tr.nodes["x_decentered"]["fn"].base_dist
    assert noise.loc.tolist() == [2.0, 2.0] and noise.scale.tolist() == pytest.approx([3.0 ** 0.5] * 2)
    z = tr.nodes["x_decentered"]["value"]
    assert torch.allclose(tr.nodes["x"]["value"], 4.0 + 3.0 ** 0.5 * (z - 2.0))
    cp.clear_param_store()
    handlers.trace(handlers.reparam(model, config=lambda msg: LocScaleReparam())).get_trace()
    assert cp.param("x_centered").tolist() == [0.5, 0.5]  # learnable, in [0, 1]
    with pytest.raises(ValueError, match="centered must be in"):
        LocScaleReparam(centered=1.5)


def test_loc_scale_reparam_of_an_observed_site_observes_its_noise():
    def model():
        return cp.sample("y", cp.dist.Normal(1.0, 2.0), obs=torch.tensor(5.0))

    tr = handlers.trace(handlers.reparam(model, config={"y": LocScaleReparam(centered=0.0)})).get_trace()
    assert tr.nodes["y_decentered"]["is_observed"]
    assert tr.nodes["y_decentered"]["value"].item() == pytest.approx(2.0)  # (5 - 1) / 2
    assert tr.nodes["y"]["value"].item() == pytest.approx(5.0)


def test_decentred_hierarchical_model_has_the_same_posterior():
    """mu ~ N(0, 10), x ~ N(mu, 1) = 3: decentred, mu_decentered = mu / 10 ~ N(3 * 10 / 101, 1 / sqrt(101))."""
    def model():
        mu = cp.sample("mu", cp.dist.Normal(0.0, 10.0))
        cp.sample("x", cp.dist.Normal(mu, 1.0), obs=torch.tensor(3.0))

    cp.clear_param_store()
    decentred = handlers.reparam(model, config={"mu": LocScaleReparam(centered=0.0)})
    guide = cp.infer.autoguide.AutoLaplaceApproximation(decentred)
    svi = cp.infer.SVI(decentred, guide, cp.optim.Adam({"lr": 0.02}), cp.infer.Trace_ELBO())
    for _ in range(400):
        svi.step()
    gaussian = guide.laplace_approximation()
    posterior = gaussian.get_posterior()
    assert posterior.loc.item() == pytest.approx(30 / 101, abs=2e-3)
    assert posterior.covariance_matrix.item() == pytest.approx(1 / 101, rel=1e-4)
    mu = cp.infer.Predictive(decentred, guide=gaussian, num_samples=3000, parallel=True)()["mu"]
    assert mu.mean().item() == pytest.approx(300 / 101, abs=0.05)
    assert mu.std().item() == pytest.approx((100 / 101) ** 0.5, rel=0.06)


def test_transform_reparam_draws_the_base_and_pushes_it_through():
    def model():
        fn = cp.dist.TransformedDistribution(
            cp.dist.Normal(torch.zeros(3), 1.0),
            [cp.dist.transforms.AffineTransform(2.0, 3.0), cp.dist.transforms.ExpTransform()])
        return cp.sample("x", fn.to_event(1))

    tr = handlers.trace(handlers.reparam(model, config={"x": TransformReparam()})).get_trace()
    base = tr.nodes["x_base"]
    assert isinstance(base["fn"], torch.distributions.Independent) and base["fn"].event_shape == (3,)
    assert torch.allclose(tr.nodes["x"]["value"], torch.exp(2.0 + 3.0 * base["value"]))
    assert tr.nodes["x"]["is_observed"] and tr.stochastic_nodes == ["x_base"]
    with pytest.raises(TypeError, match="not a TransformedDistribution"):
        handlers.trace(handlers.reparam(lambda: cp.sample("y", cp.dist.Normal(0.0, 1.0)),
                                        config={"y": TransformReparam()})).get_trace()


def test_reparam_needs_a_config():
    with pytest.raises(TypeError, match="reparam needs config"):
        handlers.reparam(chain, config=3)


# --- Pyro conventions: a trace as data, None values, block conflicts, lift with functions ----


def test_condition_takes_a_trace_and_uses_its_sample_values():
    recorded = handlers.trace(chain).get_trace()
    tr = handlers.trace(handlers.condition(chain, data=recorded)).get_trace()
    assert tr.nodes["z"]["is_observed"] and tr.nodes["z"]["value"] is recorded.nodes["z"]["value"]
    assert tr.nodes["x"]["value"] is recorded.nodes["x"]["value"]


def test_a_none_value_names_the_site_but_leaves_it_alone():
    torch.manual_seed(0)
    tr = handlers.trace(handlers.condition(chain, data={"z": None, "x": 0.25})).get_trace()
    assert not tr.nodes["z"]["is_observed"] and tr.nodes["x"]["is_observed"]
    tr = handlers.trace(handlers.do(chain, data={"z": None})).get_trace()
    assert not tr.nodes["z"]["intervened"]
    with pytest.raises(UnknownSiteError, match="'w'"):
        handlers.condition(chain, data={"w": None})()  # still strict about the names


def test_hiding_and_exposing_one_site_is_a_value_error_and_pyros_assertion_error():
    with pytest.raises(ValueError, match="cannot both hide and expose"):
        handlers.block(chain, hide=["z"], expose=["z"])
    with pytest.raises(AssertionError):
        handlers.block(chain, hide=["z"], expose=["z"])


def guide_with_params():
    loc = cp.param("loc", torch.zeros(2))
    scale = cp.param("scale", torch.ones(2), constraint=cp.constraints.positive)
    return cp.sample("z", cp.dist.Normal(loc, scale))


def test_lift_calls_a_function_prior_with_the_params_init_and_records_it_from_a_dict():
    cp.clear_param_store()
    seen = []

    def loc_prior(init, constraint):
        seen.append((init.shape, constraint))
        return torch.full(init.shape, 7.0)

    tr = handlers.trace(handlers.lift(guide_with_params, prior={"loc": loc_prior})).get_trace()
    assert seen == [(torch.Size([2]), cp.constraints.real)]
    assert tr.nodes["loc"]["type"] == "sample" and tr.nodes["loc"]["fn"] is loc_prior
    assert torch.equal(tr.nodes["loc"]["value"], torch.full((2,), 7.0))
    assert tr.nodes["scale"]["type"] == "param"


def test_lift_with_one_function_for_every_param_hides_the_lifted_sites():
    cp.clear_param_store()
    tr = handlers.trace(handlers.lift(guide_with_params, prior=lambda init, constraint: init + 1.0)).get_trace()
    assert "loc" not in tr and "scale" not in tr and "z" in tr
    assert torch.equal(tr.nodes["z"]["fn"].loc, torch.ones(2))  # the model read the lifted value


def test_lift_warns_about_dict_keys_that_name_no_param():
    cp.clear_param_store()
    with pytest.warns(UserWarning, match="'nope'"):
        handlers.lift(guide_with_params, prior={"nope": cp.dist.Normal(0.0, 1.0)})()


# --- plates under replay: the rows a model's plate may take from a trace ----------------------


def rows_of(subsample_size):
    with cp.plate("rows", 10, subsample_size=subsample_size) as rows:
        cp.sample("x", cp.dist.Normal(0.0, 1.0))
    return rows.tolist()


@pytest.mark.parametrize("model_size, guide_size, ok", [
    (None, 4, True), (4, 4, True), (10, None, True), (None, None, True),
    (10, 4, False),  # an explicit full plate may not take a subsample
    (4, 10, False), (4, None, False),  # a subsampling plate may not take every row
])
def test_replayed_plate_rows_must_match_an_explicit_subsample_size(model_size, guide_size, ok):
    recorded = handlers.trace(rows_of)
    expected = recorded(guide_size)
    replayed = handlers.replay(rows_of, trace=recorded.trace)
    if ok:
        assert replayed(model_size) == expected
    else:
        with pytest.raises(ValueError, match="plate 'rows'"):
            replayed(model_size)


def test_a_plate_given_its_rows_as_a_list_returns_that_list():
    with cp.plate("rows", 10, subsample=[1, 4, 6]) as rows:
        x = cp.sample("x", cp.dist.Normal(torch.arange(10.0)[rows], 1e-6))
    assert rows == [1, 4, 6] and x.shape == (3,)
    assert [i for i in cp.plate("rows", 10, subsample=[2, 3])] == [2, 3]


def test_pyro_messenger_module_paths_hold_our_handlers():
    from causalppl.handlers.block_messenger import BlockMessenger
    from causalppl.handlers.condition_messenger import ConditionMessenger
    from causalppl.handlers.messenger import Messenger as PyroMessenger
    from causalppl.handlers.trace_messenger import TraceMessenger
    from causalppl.handlers.trace_struct import Trace as PyroTrace

    assert (BlockMessenger, ConditionMessenger, TraceMessenger) == (
        cp.handlers.block, cp.handlers.condition, cp.handlers.trace)
    assert PyroMessenger is cp.handlers.Messenger and PyroTrace is cp.handlers.Trace
    with TraceMessenger() as tracer, ConditionMessenger(data={"x": torch.tensor(1.0)}):
        cp.sample("x", cp.dist.Normal(0.0, 1.0))
    assert tracer.trace.nodes["x"]["is_observed"]


def test_effectful_functions_are_messages_a_handler_can_answer():
    from causalppl.handlers.runtime import effectful

    @effectful(type="apply")
    def add(x, y):
        return x + y

    class Deferred(cp.handlers.Messenger):
        def __init__(self):  # Pyro's tutorials skip Messenger.__init__
            self.seen = []

        def _process_message(self, msg):
            if msg["type"] == "apply":
                self.seen.append(msg["args"])
                msg["value"] = ("deferred", msg["args"])
                msg["done"] = True

    assert add(1, 2) == 3  # no handler: it just runs
    with cp.trace() as tracer:
        assert add(torch.tensor(1.0), 2.0, name="s").item() == 3.0
    assert tracer.trace.nodes["s"]["type"] == "apply"
    with Deferred() as deferred:
        assert add(1, 2) == ("deferred", (1, 2))
    assert deferred.seen == [(1, 2)]
    with pytest.raises(ValueError, match="message type"):
        effectful(lambda: None)


def test_a_handler_may_answer_a_sample_site_whose_fn_is_not_a_distribution():
    class Answer(cp.handlers.Messenger):
        def _process_message(self, msg):
            msg["value"] = "answered"
            msg["done"] = True

    with Answer():
        assert cp.sample("x", "not a distribution") == "answered"
    with cp.trace(), pytest.raises(TypeError, match="sample site 'x': expected a torch Distribution"):
        cp.sample("x", "not a distribution")
    with pytest.raises(TypeError, match="sample site 'x': expected a torch Distribution"):
        cp.sample("x", 3.0)
