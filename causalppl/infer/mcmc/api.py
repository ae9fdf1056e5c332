"""``MCMC``: run a kernel (NUTS, HMC) for several chains and collect the draws.

>>> import torch, causalppl as cp
>>> cp.set_rng_seed(0)
>>> def model(measurement):
...     weight = cp.sample("weight", cp.dist.Normal(8.5, 1.0))
...     cp.sample("measurement", cp.dist.Normal(weight, 0.75), obs=measurement)
>>> mcmc = cp.infer.MCMC(cp.infer.NUTS(model), num_samples=400, warmup_steps=200, num_chains=2)
>>> mcmc.run(torch.tensor(9.5))
>>> samples = mcmc.get_samples()
>>> tuple(samples["weight"].shape), tuple(mcmc.get_samples(group_by_chain=True)["weight"].shape)
((800,), (2, 400))
>>> abs(samples["weight"].mean().item() - 9.14) < 0.15    # the posterior is N(9.14, 0.6)
True
>>> sorted(mcmc.diagnostics()["weight"])
['n_eff', 'r_hat']
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import warnings

import torch

from causalppl import runtime
from causalppl.handlers import block
from causalppl.infer.mcmc.hmc import HMCKernelBase
from causalppl.infer.mcmc.util import diagnostics as sample_diagnostics
from causalppl.infer.mcmc.util import format_summary
from causalppl.infer.mcmc.util import summary as sample_summary


def _progress(total, enabled, chain, num_chains):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    desc = "Sample" if num_chains == 1 else f"Sample [{chain}]"
    return tqdm(total=total, desc=desc, leave=False)


class MCMC:
    """Markov chain Monte Carlo with a ``kernel`` (:class:`NUTS` or :class:`HMC`), as in Pyro.

    Parameters
    ----------
    kernel : NUTS or HMC
    num_samples : int
        Draws kept per chain, after warmup.
    warmup_steps : int, optional
        Warmup (adaptation) iterations per chain, discarded; default ``num_samples``.
    num_chains : int
        Chains, each from its own initial point: drawn in parallel worker
        processes (``mp_context``) when they fit on the CPUs but one, else one
        after another here (with a warning), as in Pyro.
    initial_params : dict, optional
        Unconstrained starting values, site -> tensor; with ``num_chains > 1``
        a leading dim of ``num_chains`` gives each chain its own (a tensor
        without it starts every chain there).
    disable_progbar : bool
        No tqdm progress bar (the default here; Pyro shows one).
    disable_validation : bool
        Turn distribution argument validation off while sampling (default
        True, as in Pyro: divergent trajectories visit invalid values).
    transforms : dict, optional
        For a kernel built from ``potential_fn``: site -> transform from the
        support to unconstrained space, to report constrained samples.
    hook_fn : callable, optional
        ``hook_fn(kernel, params, stage, i)`` after every iteration
        (``stage`` is ``"Warmup"`` or ``"Sample"``; ``params`` the unconstrained values, as in Pyro).

    ``run(*args, **kwargs)`` runs the model with those arguments;
    :meth:`get_samples`, :meth:`summary`, :meth:`diagnostics` read the draws.
    Draws are of the constrained latent sites. Seed with ``cp.set_rng_seed``.
    """

    def __init__(self, kernel, num_samples, warmup_steps=None, initial_params=None, num_chains=1, hook_fn=None,
                 mp_context=None, disable_progbar=True, disable_validation=True, transforms=None, save_params=None):
        if not callable(getattr(kernel, "sample", None)):
            raise TypeError(f"MCMC: kernel must be an MCMC kernel (NUTS, HMC, or an MCMCKernel), got {kernel!r}")
        num_samples = _whole("num_samples", num_samples, 1)
        warmup_steps = num_samples if warmup_steps is None else _whole("warmup_steps", warmup_steps, 0)
        num_chains = _whole("num_chains", num_chains, 1)
        self.kernel = kernel
        self.num_samples = num_samples
        self.warmup_steps = warmup_steps
        self.num_chains = num_chains
        self.initial_params = initial_params
        self.hook_fn = hook_fn
        self.disable_progbar = disable_progbar
        self.disable_validation = disable_validation
        self.transforms = transforms
        self.save_params = None if save_params is None else list(save_params)
        if getattr(kernel, "potential_fn", None) is not None and getattr(kernel, "model", None) is None \
                and initial_params is None:
            raise ValueError("MCMC: a kernel built from potential_fn needs initial_params (unconstrained values)")
        self.mp_context = mp_context
        self.sampler = _UnarySampler(self)
        if num_chains > 1:
            available_cpu = max(torch.multiprocessing.cpu_count() - 1, 1)  # one CPU for this process
            if num_chains <= available_cpu:
                self.sampler = _MultiSampler(self)
            else:
                warnings.warn(f"num_chains={num_chains} is more than available_cpu={available_cpu}. "
                              "Chains will be drawn sequentially.", UserWarning, stacklevel=2)
        self._samples = None
        self._unconstrained = None
        self._diagnostics = []
        self._args, self._kwargs = (), {}

    # -- running ------------------------------------------------------------------------

    def _chain_initial_params(self, chain):
        if self.initial_params is None:
            return None
        params = {}
        for name, value in self.initial_params.items():
            value = torch.as_tensor(value).detach()
            if self.num_chains > 1:
                if value.dim() == 0 or value.shape[0] != self.num_chains:
                    raise ValueError(
                        f"MCMC: initial_params['{name}'] has shape {tuple(value.shape)}; with num_chains="
                        f"{self.num_chains} its leading dim must be the chains (one start per chain)")
                value = value[chain]
            params[name] = value
        return params

    def run(self, *args, **kwargs):
        """Run every chain: ``warmup_steps`` adaptation iterations, then ``num_samples`` kept draws."""
        self._args, self._kwargs = args, kwargs
        args = tuple(arg.detach() if isinstance(arg, torch.Tensor) else arg for arg in args)
        with contextlib.ExitStack() as stack:
            stack.enter_context(block())
            if self.disable_validation:
                stack.enter_context(runtime.validation_enabled(False))
            results = self.sampler.run(args, kwargs)
        per_chain = [draws for draws, _, _ in results]
        raw = [unconstrained for _, unconstrained, _ in results]
        self._diagnostics = [diagnostics for _, _, diagnostics in results]
        names = list(per_chain[0]) if per_chain else []
        self._samples = {name: torch.stack([chain[name] for chain in per_chain]) for name in names}
        self._unconstrained = torch.stack(raw) if raw and raw[0] is not None else None
        kernel = self.kernel
        transforms = self.transforms
        if transforms is None and not isinstance(kernel, HMCKernelBase):
            transforms = getattr(kernel, "transforms", None)  # a kernel's own samples are unconstrained
        if transforms:
            self._samples = {name: transforms[name].inv(value) if name in transforms else value
                             for name, value in self._samples.items()}

    def _draw_chain(self, chain, args, kwargs):
        """One chain: ``(draws: site -> stacked tensor, unconstrained draws or None, kernel diagnostics)``."""
        kernel = self.kernel
        initial = self._chain_initial_params(chain)
        if initial is not None or isinstance(kernel, HMCKernelBase):
            kernel.initial_params = initial
        unconstrained = None
        if isinstance(kernel, HMCKernelBase):
            kernel._reuse_potential = chain > 0
            kernel.setup(self.warmup_steps, *args, **kwargs)
            draws, raw = self._run_chain(kernel, chain)
            unconstrained = torch.stack(raw) if raw else None
            draws.update(_discrete_draws(kernel, draws, self.num_samples))
        else:
            draws = self._run_generic_chain(kernel, chain, args, kwargs)
        diagnostics = kernel.diagnostics()
        if not isinstance(kernel, HMCKernelBase):
            kernel.cleanup()
        return {name: torch.stack(values) for name, values in draws.items()}, unconstrained, diagnostics

    def _stage(self, stage, chain):
        return stage if self.num_chains == 1 else f"{stage} [{chain}]"

    def _run_generic_chain(self, kernel, chain, args, kwargs):
        """Pyro's protocol for a kernel of one's own: ``params = kernel.sample(params)`` per iteration."""
        kernel.setup(self.warmup_steps, *args, **kwargs)
        params = kernel.initial_params
        keep = self.save_params
        draws = {}
        for i in range(self.warmup_steps):
            params = kernel.sample(params)
            if self.hook_fn is not None:
                self.hook_fn(kernel, params, self._stage("Warmup", chain), i)
        kernel.end_warmup()
        for i in range(self.num_samples):
            params = kernel.sample(params)
            if self.hook_fn is not None:
                self.hook_fn(kernel, params, self._stage("Sample", chain), i)
            for name, value in (params or {}).items():
                if keep is None or name in keep:
                    draws.setdefault(name, []).append(torch.as_tensor(value).detach().clone())
        return draws

    def _run_chain(self, kernel, chain):
        total = self.warmup_steps + self.num_samples
        bar = _progress(total, not self.disable_progbar, chain, self.num_chains)
        keep = self.save_params
        draws, unconstrained = {}, []
        try:
            for i in range(total):
                state = kernel.step()
                stage = "Warmup" if i < self.warmup_steps else "Sample"
                if stage == "Sample":
                    values = kernel.values()
                    for name, value in values.items():
                        if keep is None or name in keep:
                            draws.setdefault(name, []).append(value)
                    unconstrained.append(state.z.detach())
                if self.hook_fn is not None:
                    index = i if stage == "Warmup" else i - self.warmup_steps
                    self.hook_fn(kernel, kernel.potential.split(state.z), self._stage(stage, chain), index)
                if bar is not None:
                    bar.set_postfix(kernel.logging(), refresh=False)
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
        return draws, unconstrained

    # -- results --------------------------------------------------------------------------

    def _check_run(self):
        if self._samples is None:
            raise RuntimeError("MCMC: call run(...) first")

    def get_samples(self, num_samples=None, group_by_chain=False, include_discrete=True):
        """Draws of each latent site: ``(num_chains * num_samples, *shape)``, or
        ``(num_chains, num_samples, *shape)`` with ``group_by_chain=True``.

        ``num_samples`` picks that many draws at random (without replacement when there are enough).
        Discrete sites that HMC and NUTS summed out are drawn from their posterior given each draw
        of the others; ``include_discrete=False`` leaves them out.
        """
        self._check_run()
        samples = self._samples
        if not include_discrete:
            discrete = set(getattr(self.kernel.potential, "enumerated", ()) if hasattr(self.kernel, "potential")
                           else ())
            samples = {name: value for name, value in samples.items() if name not in discrete}
        if num_samples is None:
            if group_by_chain:
                return dict(samples)
            return {name: value.reshape((-1,) + value.shape[2:]) for name, value in samples.items()}
        if group_by_chain:
            per_chain = self.num_samples
            index = _choose(per_chain, num_samples)
            return {name: value[:, index] for name, value in samples.items()}
        flat = {name: value.reshape((-1,) + value.shape[2:]) for name, value in samples.items()}
        total = self.num_chains * self.num_samples
        index = _choose(total, num_samples)
        return {name: value[index] for name, value in flat.items()}

    def diagnostics(self):
        """Per site ``{"n_eff", "r_hat"}``; and per chain (``"chain 0"``, ...) ``"divergences"`` (indices
        of divergent draws), ``"acceptance rate"``, ``"mean accept prob"`` (the acceptance statistic
        over the draws), ``"warmup accept prob"`` (over the warmup, which the step size adaptation
        steers to ``target_accept_prob``), ``"step size"`` (and for NUTS ``"mean tree depth"``)."""
        self._check_run()
        out = sample_diagnostics(self._samples)
        if self._diagnostics:
            for key in self._diagnostics[0]:
                out[key] = {f"chain {i}": d[key] for i, d in enumerate(self._diagnostics)}
        return out

    def summary(self, prob=0.9):
        """Print and return the table: per site mean, std, median, the ``prob`` highest-density interval
        (columns ``5.0%``/``95.0%`` for 0.9, as Pyro), ``n_eff`` and split ``r_hat``; then the number
        of divergences. Returns ``{site: {column: tensor}}``."""
        self._check_run()
        text = format_summary(self._samples, prob=prob)
        divergences = sum(len(d.get("divergences", ())) for d in self._diagnostics)
        print(text)
        print(f"Number of divergences: {divergences}")
        return sample_summary(self._samples, prob=prob)


def _discrete_draws(kernel, draws, num_samples):
    """For a model with enumerated discrete sites: one posterior draw of them per kept draw of the rest."""
    potential = kernel.potential
    names = getattr(potential, "enumerated", ())
    if not names:
        return {}
    out = {name: [] for name in names}
    for i in range(num_samples):
        values = potential.sample_discrete({name: value[i] for name, value in draws.items()})
        for name in names:
            out[name].append(values[name])
    return out


class _UnarySampler:
    """Draws the chains of an :class:`MCMC` one after another, in this process (Pyro's runner of that name)."""

    def __init__(self, mcmc):
        self.mcmc = mcmc

    def run(self, args, kwargs):
        return [self.mcmc._draw_chain(chain, args, kwargs) for chain in range(self.mcmc.num_chains)]


def _chain_worker(mcmc, chain, seed, args, kwargs, queue):
    """A worker process's job: draw one chain (seeded for it) and send it back."""
    try:
        torch.manual_seed(seed)
        torch.set_num_threads(1)  # one chain per CPU: intra-op threads would only contend with the other chains
        with contextlib.ExitStack() as stack:
            stack.enter_context(block())
            if mcmc.disable_validation:
                stack.enter_context(runtime.validation_enabled(False))
            result = mcmc._draw_chain(chain, args, kwargs)
        buffer = io.BytesIO()
        torch.save(result, buffer)  # plain bytes: no shared memory that would die with this process
        queue.put((chain, buffer.getvalue()))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which raises it
        queue.put((chain, err))


class _MultiSampler(_UnarySampler):
    """Draws the chains of an :class:`MCMC` at the same time, one worker process each (Pyro's runner).

    The processes start with ``mp_context`` (default ``"fork"`` where the
    platform has it; with ``"spawn"`` the kernel and model must pickle),
    each seeded from this process's generator; a chain that fails raises
    its error here.
    """

    def run(self, args, kwargs):
        mcmc = self.mcmc
        methods = multiprocessing.get_all_start_methods()
        method = mcmc.mp_context or ("fork" if "fork" in methods else methods[0])
        context = multiprocessing.get_context(method)
        queue = context.Queue()
        seeds = torch.randint(2**62, (mcmc.num_chains,)).tolist()
        workers = [context.Process(target=_chain_worker, args=(mcmc, chain, seeds[chain], args, kwargs, queue),
                                   daemon=True)
                   for chain in range(mcmc.num_chains)]
        for worker in workers:
            worker.start()
        results = {}
        try:
            while len(results) < len(workers):
                chain, result = queue.get()
                if isinstance(result, BaseException):
                    raise result
                results[chain] = torch.load(io.BytesIO(result), weights_only=False)
        finally:
            for worker in workers:
                worker.join(timeout=1)
                if worker.is_alive():
                    worker.terminate()
        return [results[chain] for chain in range(mcmc.num_chains)]


def _choose(total, num):
    num = _whole("num_samples", num, 1)
    if num <= total:
        return torch.randperm(total)[:num]
    return torch.randint(total, (num,))


def _whole(name, value, low):
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import operator

            value = operator.index(value)
        except TypeError:
            raise ValueError(f"MCMC: {name} must be a whole number >= {low}, got {value!r}") from None
    if value < low:
        raise ValueError(f"MCMC: {name} must be a whole number >= {low}, got {value!r}")
    return value
