"""Tensor Monte Carlo's name (Pyro's ``TraceTMC_ELBO``), for what causalppl can compute of it.

TMC (Aitchison 2019) estimates ``-log p(x)`` by contracting, over every
enumerated latent, the product of ``p / q`` factors; sites the model
enumerates exhaustively are summed out exactly, and each guide site is drawn
once. Under those conditions the TMC estimate is the one
:class:`~causalppl.infer.TraceEnum_ELBO` computes, so this class is that
loss. Guide-side enumeration and ``config_enumerate(num_samples=...)`` (TMC's
local Monte Carlo samples) are not implemented and raise
``NotImplementedError`` naming the site.

>>> import torch, causalppl as cp
>>> @cp.infer.config_enumerate
... def model():
...     z = cp.sample("z", cp.dist.Bernoulli(0.5))
...     cp.sample("x", cp.dist.Normal(2.0 * z, 1.0), obs=torch.tensor(0.0))
>>> exact = -torch.logsumexp(torch.stack([cp.dist.Normal(m, 1.0).log_prob(torch.tensor(0.0))
...                                       for m in (0.0, 2.0)]) + torch.tensor(0.5).log(), 0)
>>> abs(TraceTMC_ELBO(max_plate_nesting=0).loss(model, lambda: None) - exact.item()) < 1e-6
True
"""

from causalppl.infer.traceenum import TraceEnum_ELBO


class TraceTMC_ELBO(TraceEnum_ELBO):
    """``-log p(x)`` by exact contraction of the model's enumerated sites; guide sites drawn once."""

    def _check(self, model_trace, guide_trace):
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and site["infer"].get("enumerate"):
                raise NotImplementedError(f"guide site '{name}': TraceTMC_ELBO does not implement guide-side "
                                          "enumeration (use TraceEnum_ELBO)")
        super()._check(model_trace, guide_trace)
