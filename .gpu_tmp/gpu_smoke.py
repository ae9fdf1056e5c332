import torch, causalppl as cp
from causalppl.infer.autoguide import AutoNormal, AutoDelta, AutoMultivariateNormal
torch.set_default_device("cuda")
full = torch.linspace(-2, 2, 20)
def model(idx):
    s = cp.sample("s", cp.dist.LogNormal(0.0, 1.0))
    with cp.plate("rows", 20, subsample=idx):
        z = cp.sample("z", cp.dist.Normal(0.0, s))
        cp.sample("x", cp.dist.Normal(z, 1.0), obs=full[idx])
for G in (AutoNormal, AutoDelta, AutoMultivariateNormal):
    cp.clear_param_store()
    idx = torch.arange(20) if G is AutoMultivariateNormal else torch.randperm(20)[:5]
    kw = {} if G is AutoMultivariateNormal else {"create_plates": lambda idx: cp.plate("rows", 20, subsample=idx)}
    g = G(model, **kw)
    svi = cp.infer.SVI(model, g, cp.optim.ClippedAdam({"lr": 0.05}), cp.infer.TraceMeanField_ELBO(num_particles=4, vectorize_particles=True))
    for _ in range(20): svi.step(idx)
    print(G.__name__, {k: v.device for k, v in g.median(idx).items()}, {k: str(v.device) for k, v in cp.get_param_store().items()})
    out = cp.infer.Predictive(model, guide=g, num_samples=10, parallel=True)(idx)
    out2 = cp.infer.Predictive(model, guide=g, num_samples=3)(idx)
    print({k: (tuple(v.shape), str(v.device)) for k, v in out.items()}, {k: tuple(v.shape) for k, v in out2.items()})
def scale():
    w = cp.sample("weight", cp.dist.Normal(8.5, 1.0))
    cp.sample("measurement", cp.dist.Normal(w, 0.75), obs=torch.tensor(9.5))
imp = cp.infer.Importance(scale, num_samples=100000).run()
print("logZ", imp.log_evidence().item(), imp.log_evidence().device, imp.effective_sample_size().item(), imp.posterior_samples(5)["weight"].device)
sched = cp.optim.StepLR({"optimizer": cp.optim.ClippedAdam, "optim_args": {"lr": 0.1}, "step_size": 1})
w = torch.zeros(3, requires_grad=True); w.grad = torch.ones(3); sched([w]); sched.step(); print(sched.get_last_lr(), w)
print("GPU OK")
