"""Optimisers: ClippedAdam and the Pyro-style learning-rate schedulers."""

import math

import pytest
import torch

import causalppl as cp

pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def run_steps(optim, grads):
    """Apply ``optim`` to one 3-vector for each gradient in ``grads``; return the trajectory."""
    w = torch.zeros(3, requires_grad=True)
    path = []
    for grad in grads:
        w.grad = grad.clone()
        optim([w])
        path.append(w.detach().clone())
    return torch.stack(path)


def test_clipped_adam_equals_adam_when_nothing_is_clipped():
    grads = torch.randn(20, 3)
    args = {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.1}
    ours = run_steps(cp.optim.ClippedAdam({**args, "clip_norm": 1e6}), grads)
    reference = run_steps(cp.optim.PyroOptim(torch.optim.Adam, args), grads)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_clipped_adam_clamps_each_gradient_entry():
    w = torch.zeros(3, requires_grad=True)
    w.grad = torch.tensor([1000.0, -1000.0, 0.5])
    cp.optim.ClippedAdam({"lr": 0.1, "clip_norm": 2.0})([w])
    assert w.grad.tolist() == [2.0, -2.0, 0.5]
    # Adam's first step moves every entry by lr against its gradient's sign.
    assert torch.allclose(w.detach(), torch.tensor([-0.1, 0.1, -0.1]), atol=1e-6)
    # Clamped: a huge gradient later in training is the same as clip_norm.
    big = run_steps(cp.optim.ClippedAdam({"lr": 0.1, "clip_norm": 1.0}), torch.full((5, 3), 1e9))
    small = run_steps(cp.optim.ClippedAdam({"lr": 0.1, "clip_norm": 1.0}), torch.full((5, 3), 1.0))
    assert torch.allclose(big, small)


def test_clipped_adam_decays_the_learning_rate_each_step():
    optim = cp.optim.ClippedAdam({"lr": 0.1, "lrd": 0.9})
    run_steps(optim, torch.ones(5, 3))
    assert optim.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.9**5)


def test_clipped_adam_rejects_bad_arguments():
    w = torch.zeros(1, requires_grad=True)
    w.grad = torch.ones(1)
    with pytest.raises(ValueError, match="clip_norm"):
        cp.optim.ClippedAdam({"clip_norm": -1.0})([w])
    with pytest.raises(ValueError, match="lrd"):
        cp.optim.ClippedAdam({"lrd": 0.0})([w])


def test_svi_with_clipped_adam_fits_a_mean():
    def model():
        cp.sample("x", cp.dist.Normal(cp.param("mu", torch.tensor(0.0)), 1.0), obs=torch.tensor(3.0))

    def guide():
        pass

    svi = cp.infer.SVI(model, guide, cp.optim.ClippedAdam({"lr": 0.1}), cp.infer.Trace_ELBO())
    for _ in range(300):
        svi.step()
    assert cp.param("mu").item() == pytest.approx(3.0, abs=0.05)


def lrs_after(scheduler, steps, *step_args):
    """Take one optimiser step, then ``steps`` scheduler steps; return the lr after each."""
    w = torch.zeros(1, requires_grad=True)
    w.grad = torch.ones(1)
    scheduler([w])
    lrs = []
    for _ in range(steps):
        scheduler.step(*step_args)
        lrs.append(scheduler.get_last_lr()[0])
    return lrs


SGD = {"optimizer": torch.optim.SGD, "optim_args": {"lr": 1.0}}


def test_exponential_and_step_schedules():
    assert lrs_after(cp.optim.ExponentialLR({**SGD, "gamma": 0.5}), 3) == pytest.approx([0.5, 0.25, 0.125])
    assert lrs_after(cp.optim.StepLR({**SGD, "step_size": 2, "gamma": 0.1}), 4) == (
        pytest.approx([1.0, 0.1, 0.1, 0.01])
    )
    assert lrs_after(cp.optim.MultiStepLR({**SGD, "milestones": [1, 3], "gamma": 0.5}), 4) == (
        pytest.approx([0.5, 0.5, 0.25, 0.25])
    )


def test_cosine_and_one_cycle_schedules():
    lrs = lrs_after(cp.optim.CosineAnnealingLR({**SGD, "T_max": 4, "eta_min": 0.0}), 4)
    assert lrs == pytest.approx([0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(1, 5)], abs=1e-6)
    lrs = lrs_after(cp.optim.OneCycleLR({**SGD, "max_lr": 1.0, "total_steps": 10}), 8)
    assert max(lrs) == pytest.approx(1.0, abs=0.05) and lrs[-1] < 0.2


def test_reduce_on_plateau_takes_the_loss():
    sched = cp.optim.ReduceLROnPlateau({**SGD, "factor": 0.5, "patience": 1})
    assert lrs_after(sched, 4, 1.0) == pytest.approx([1.0, 1.0, 0.5, 0.5])


def test_scheduler_accepts_a_causalppl_factory_and_trains_with_svi():
    def model():
        cp.sample("x", cp.dist.Normal(cp.param("mu", torch.tensor(0.0)), 1.0), obs=torch.tensor(3.0))

    def guide():
        pass

    sched = cp.optim.StepLR({"optimizer": cp.optim.ClippedAdam, "optim_args": {"lr": 0.1},
                             "step_size": 100, "gamma": 0.5})
    svi = cp.infer.SVI(model, guide, sched, cp.infer.Trace_ELBO())
    for _ in range(300):
        svi.step()
        sched.step()
    assert type(sched.optimizer) is cp.optim.clipped_adam.ClippedAdam
    assert sched.get_last_lr() == pytest.approx([0.1 * 0.5**3])
    assert cp.param("mu").item() == pytest.approx(3.0, abs=0.05)


def test_parameters_added_later_join_the_schedule():
    sched = cp.optim.ExponentialLR({**SGD, "gamma": 0.5})
    a = torch.zeros(1, requires_grad=True)
    a.grad = torch.ones(1)
    sched([a])
    sched.step()
    b = torch.zeros(1, requires_grad=True)
    b.grad = torch.ones(1)
    sched([a, b])
    assert len(sched.optimizer.param_groups) == 2
    sched.step()
    assert sched.get_last_lr() == pytest.approx([0.25, 0.25])


def test_scheduler_arguments_are_checked():
    with pytest.raises(TypeError, match="optimizer"):
        cp.optim.StepLR({"optim_args": {"lr": 0.1}, "step_size": 1})
    with pytest.raises(TypeError, match="optimizer"):
        cp.optim.StepLR({"optimizer": "sgd", "step_size": 1})


def test_scheduler_state_round_trips():
    sched = cp.optim.ExponentialLR({**SGD, "gamma": 0.5})
    lrs_after(sched, 2)
    state = sched.get_state()
    other = cp.optim.ExponentialLR({**SGD, "gamma": 0.5})
    lrs_after(other, 0)
    other.set_state(state)
    assert other.get_last_lr() == pytest.approx([0.25])


def test_clipped_adam_decays_before_each_step_like_pyro():
    # Step t (from 1) uses lr * lrd**t: the first SGD-like Adam move is lr * lrd.
    w = torch.zeros(1, requires_grad=True)
    w.grad = torch.ones(1)
    cp.optim.ClippedAdam({"lr": 0.1, "lrd": 0.5})([w])
    assert w.item() == pytest.approx(-0.05, abs=1e-6)


def test_a_non_contiguous_grad_gets_the_same_step_as_a_contiguous_one():
    # torch's fused CPU Adam reads a transposed grad in memory order: the optimiser must hand it a contiguous one.
    grad = torch.arange(6.0).reshape(3, 2).t()  # (2, 3), not contiguous
    steps = []
    for g in (grad, grad.contiguous()):
        w = torch.zeros(2, 3, requires_grad=True)
        opt = cp.optim.Adam({"lr": 0.1})
        for _ in range(2):
            w.grad = g.clone() if g.is_contiguous() else g
            opt([w])
        steps.append(w.detach().clone())
    assert torch.equal(steps[0], steps[1])
    # Adam's first steps move each entry by lr * sign(grad): zero grads stay put.
    assert steps[0][0, 0] == 0 and torch.all(steps[0].flatten()[1:] < 0)
def test_clip_args_clip_value_clamps_each_entry_and_clip_norm_scales_the_total():
    w = torch.zeros(2, requires_grad=True)
    w.grad = torch.tensor([3.0, -0.5])
    cp.optim.SGD({"lr": 1.0}, {"clip_value": 1.0})([w])
    assert w.tolist() == [-1.0, 0.5]
    v = torch.zeros(2, requires_grad=True)
    v.grad = torch.tensor([3.0, 4.0])  # norm 5, clipped to norm 1
    cp.optim.SGD({"lr": 1.0}, {"clip_norm": 1.0})([v])
    assert v.tolist() == pytest.approx([-0.6, -0.8], abs=1e-6)


def test_per_param_state_saves_and_loads_before_the_params_are_seen(tmp_path):
    cp.clear_param_store()
    w = cp.param("w", torch.zeros(1))
    adam = cp.optim.Adam({"lr": 0.1})
    for _ in range(2):
        w.unconstrained().grad = torch.ones(1)
        adam([w.unconstrained()])
    state = adam.get_state()
    assert state["w"]["state"][0]["step"] == 2
    path = tmp_path / "adam.pt"
    adam.save(path)
    fresh = cp.optim.Adam({"lr": 0.1})
    fresh.load(path)  # no params yet: applied when "w" joins
    w.unconstrained().grad = torch.ones(1)
    fresh([w.unconstrained()])
    assert fresh.get_state()["w"]["state"][0]["step"] == 3
    assert fresh.optim_objs[w.unconstrained()] is fresh.optimizer
    assert fresh.pt_optim_constructor is torch.optim.Adam


def test_two_argument_optim_args_get_module_and_param_names():
    cp.clear_param_store()
    seen = []
    a = cp.param("net$$$weight", torch.zeros(1))
    b = cp.param("b", torch.zeros(1))

    def args(module_name, param_name):
        seen.append((module_name, param_name))
        return {"lr": 0.0 if param_name == "b" else 1.0}

    opt = cp.optim.SGD(args)
    for p in (a, b):
        p.unconstrained().grad = torch.ones(1)
    opt([a.unconstrained(), b.unconstrained()])
    assert sorted(seen, key=str) == sorted([("net", "weight"), (None, "b")], key=str)
    assert cp.param("b").item() == 0.0 and cp.param("net$$$weight").item() == -1.0


def test_lambda_lr_multiplies_the_base_rate():
    sched = cp.optim.LambdaLR({"optimizer": torch.optim.SGD, "optim_args": {"lr": 0.01},
                               "lr_lambda": lambda epoch: 2.0 ** epoch})
    w = torch.zeros(1, requires_grad=True)
    w.grad = torch.ones(1)
    sched([w])
    sched.step()
    sched.step()
    assert sched.get_last_lr() == [pytest.approx(0.04)]
    assert sched.pt_scheduler_constructor is torch.optim.lr_scheduler.LambdaLR
    assert sched.optim_objs[w] is sched.scheduler


def test_dct_adam_matches_adam_without_a_time_dim_and_splits_frequencies_with_one():
    from causalppl.optim_dct_adam import DCTAdam, _dct_matrix

    c = _dct_matrix(5, torch.float64, "cpu")
    assert torch.allclose(c @ c.T, torch.eye(5, dtype=torch.float64), atol=1e-12)  # orthonormal
    x, y = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    ours, adam = DCTAdam([x], lr=0.1), torch.optim.Adam([y], lr=0.1)
    for g in ([1.0, -2.0, 0.5], [0.3, 0.3, -1.0]):
        x.grad, y.grad = torch.tensor(g), torch.tensor(g)
        ours.step()
        adam.step()
    assert torch.allclose(x, y, atol=1e-6)
    # With a time dim the moments live on (values, DCT of values); the step maps back by the inverse DCT.
    from causalppl.optim_dct_adam import _forward, _inverse

    g = torch.randn(2, 6, dtype=torch.float64)
    assert torch.allclose(_inverse(_forward(g, -1), -1, 6), 2 * g, atol=1e-12)
    z = torch.zeros(6, requires_grad=True)
    z._pyro_dct_dim = -1
    opt = DCTAdam([z], lr=0.1)
    z.grad = torch.linspace(-1.0, 1.0, 6)
    opt.step()
    assert bool(torch.isfinite(z).all()) and z[0].item() > 0 > z[-1].item()
