"""Data-parallel fits and queries on ``torch.distributed``, launched by ``torchrun``.

Each of the K processes (*ranks*) of a process group holds a shard of the
rows; gloo is the backend on CPU, nccl on GPU. Outside ``torchrun`` (no
``WORLD_SIZE`` in the environment) everything here runs as one rank, so a
script written for ``torchrun`` also runs as a plain ``python`` script.

How the gradients are scaled. Rank ``k`` holds ``n_k`` of the ``N`` rows and
takes a minibatch of ``b_k`` of them per step (``b_k = n_k`` in a full
batch). Its loss is::

    L_k = (n_k / b_k) * (its batch's row terms) + (1 / K) * (the global terms)

The plate over its ``n_k`` rows gives the first factor; :class:`RankShare`
gives the second to every site outside that plate (Bayesian weights, global
latents, in model and guide alike). ``sum_k L_k`` is then an unbiased
estimate of the full-data loss, exactly the full-data loss in a full batch,
so gradients are all-reduced with **SUM**. With equal shards (``n_k = N/K``)
this is the same as every rank using ``plate(size=N, subsample_size=b)`` (its
own unbiased full-data estimate ``K * L_k``) and averaging with MEAN; the SUM
form stays exact when ``N`` is not a multiple of ``K``.

Per-row latents stay on their rank: an autoguide's params for sites in the
rows plate have one entry per local row, are never broadcast or all-reduced,
and each rank checkpoints its own.

>>> shard_rows(10, Parallel(rank=1, size=2), seed=0).tolist()
[1, 5, 9, 8, 2]
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import sys
from dataclasses import dataclass, field, replace

import torch
import torch.distributed as dist

from causalppl.graph.lower import ROWS
from causalppl.params import set_rng_seed
from causalppl.runtime import Messenger

TIMEOUT = datetime.timedelta(minutes=10)  # a rank that waits longer than this for the others fails


def under_torchrun():
    """Whether this process was started by ``torchrun`` (or ``torch.distributed.run``).

    >>> import os; "WORLD_SIZE" in os.environ or under_torchrun() is False
    True
    """
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def leave(status=0):
    """End a ``torchrun`` worker with exit ``status``, skipping the interpreter's teardown.

    A gloo process group's threads can abort a process while the interpreter
    tears down (SIGABRT: "terminate called without an active exception");
    leaving the group first and exiting directly avoids it. Outside a process
    group this is plain ``sys.exit``.
    """
    if not dist.is_initialized():
        sys.exit(status)
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def attempt_store(rank, size):
    """The key-value store of the process group, with keys of this ``torchrun`` attempt only.

    Why: ``torchrun``'s workers share the rendezvous's TCPStore, which outlives
    an elastic restart, and ``init_process_group`` writes its keys (each rank's
    gloo address) without a per-attempt prefix. After a restart a new rank
    could read the address that a killed attempt's rank left there, connect
    to a closed port, and either be refused ("connectFullMesh failed") or
    retry until the timeout (a hang). Prefixing the keys with
    ``TORCHELASTIC_RESTART_COUNT`` makes each attempt read only its own.
    """
    from torch.distributed.rendezvous import rendezvous

    store, _, _ = next(rendezvous("env://", rank, size, timeout=TIMEOUT))
    store.set_timeout(TIMEOUT)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"causalppl/attempt{attempt}/default_pg", store)


@dataclass(frozen=True)
class Parallel:
    """This process's place in the work: ``rank`` of ``size`` ranks (one rank without a process group).

    Every method that reduces or broadcasts is a collective: all ranks call it
    in the same order. With ``size == 1`` they return their input.

    >>> one = Parallel()
    >>> one.is_main, one.share(10), float(one.sum(torch.tensor(2.0)))
    (True, 10, 2.0)
    """

    rank: int = 0
    size: int = 1

    @classmethod
    def start(cls, distributed=True, backend=None):
        """Join the process group ``torchrun`` describes (once per process); one rank outside it."""
        if not distributed:
            return cls()
        if not dist.is_initialized():
            if not under_torchrun():
                return cls()
            if backend is None:
                backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            dist.init_process_group(backend, store=attempt_store(rank, size), rank=rank, world_size=size,
                                    timeout=TIMEOUT)
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def is_main(self):
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0

    def share(self, n):
        """How many of ``n`` draws or rows this rank takes (the first ``n % size`` ranks take one more)."""
        return n // self.size + (1 if self.rank < n % self.size else 0)

    # -- collectives -------------------------------------------------------------

    def sum(self, tensor):
        """``tensor`` summed over the ranks (a new tensor, every rank gets the total)."""
        if self.size == 1:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def broadcast(self, tensor):
        """Overwrite ``tensor`` in place with rank 0's."""
        if self.size > 1:
            dist.broadcast(tensor.data, src=0)
        return tensor

    def seed_from_main(self, seed=None):
        """``seed``, or (when None) a seed drawn from rank 0's random stream: the same on every rank."""
        if seed is None:
            seed = int(torch.randint(2**31, ()))
        return int(self.broadcast(torch.tensor(seed, dtype=torch.long, device=self.device())))

    def gather(self, obj):
        """The list of every rank's ``obj`` on rank 0 (None on the others)."""
        if self.size == 1:
            return [obj]
        gathered = [None] * self.size if self.is_main else None
        dist.gather_object(obj, gathered, dst=0)
        return gathered

    def device(self):
        """Where collectives' tensors live: the current GPU for nccl, else the CPU."""
        if self.size > 1 and dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    @contextlib.contextmanager
    def own_random_stream(self):
        """Inside: this rank's own random stream (seeded from rank 0's stream plus the rank), restored after.

        Rank 0's stream advances by one draw, so repeated queries differ.
        """
        seed = self.seed_from_main()
        with torch.random.fork_rng(devices=_cuda_devices()):
            set_rng_seed(seed + self.rank)
            yield

    # -- fitting -----------------------------------------------------------------

    def shard(self, data, seed):
        """This rank's rows of every column of ``data`` (see :func:`shard_rows`); returns (shard, N)."""
        if not data:
            return data, 0
        rows = len(next(iter(data.values())))
        if self.size == 1:
            return data, rows
        if rows < self.size:
            raise ValueError(f"distributed fit: {rows} rows of data cannot be shared by {self.size} ranks")
        index = shard_rows(rows, self, seed)
        return {name: value.index_select(0, index.to(value.device)) for name, value in data.items()}, rows

    def column_stats(self, column):
        """``(mean, sd)`` of a data column over all ranks' rows, or None for a binary {0, 1} column.

        Two passes (mean, then squared deviations), in double precision, as
        ``column.std()`` in one process.
        """
        column = column.double().reshape(-1)
        first = self.sum(torch.stack([torch.tensor(float(column.numel()), dtype=torch.double),
                                      column.sum().cpu(),
                                      (~((column == 0) | (column == 1))).sum().double().cpu()]).to(self.device()))
        count, total, not_binary = (float(v) for v in first)
        if not_binary == 0:
            return None
        mean = total / count
        squares = float(self.sum(((column - mean) ** 2).sum().to(self.device())))
        spread = math.sqrt(squares / (count - 1)) if count > 1 else 1.0
        return mean, spread if spread > 0 else 1.0

    def total(self, tensor):
        """Sum of per-rank sufficient statistics (X'X, X'y, counts), for exact maximum likelihood."""
        if self.size == 1:
            return tensor
        return self.sum(tensor.to(self.device())).to(tensor.device)

    def prepare_svi(self, svi, stores, guide):
        """Create every param (one loss evaluation, off the random stream), then make the shared ones rank 0's.

        Returns the names of the per-row (local) params, which stay on their rank.
        """
        local = local_param_names(guide, self)
        if self.size == 1:
            return local
        with torch.random.fork_rng(devices=_cuda_devices()):
            svi.evaluate_loss()
        local = local_param_names(guide, self)
        for store in stores:
            for name in sorted(store.keys()):
                if name not in local:
                    self.broadcast(store.leaf(name))
        return local

    def wrap_svi(self, model, guide, optim, stores, local):
        """Model, guide and optimiser for one rank's part of a data-parallel SVI step."""
        if self.size == 1:
            return model, guide, optim
        return (RankShare(model, self.size), RankShare(guide, self.size),
                AllReduced(optim, self, stores, local))

    def loss(self, value):
        """The step's full-data loss: the ranks' losses summed."""
        if self.size == 1:
            return value
        return float(self.sum(torch.tensor(value, dtype=torch.double, device=self.device())))

    def broadcast_posterior(self, state):
        """Make every rank keep rank 0's draws of the Bayesian weights."""
        if self.size > 1 and state.posterior:
            for name in sorted(state.posterior):
                value = state.posterior[name].to(self.device())
                state.posterior[name] = self.broadcast(value).to(state.posterior[name].device)


def shard_rows(rows, parallel, seed=0):
    """The rows of ``parallel.rank``: a permutation seeded by ``seed``, every ``size``-th entry from the rank.

    As ``torch.utils.data.DistributedSampler`` (shuffle on) but without padding:
    the shards differ in size by at most one row, and together hold each row once.

    >>> sorted(shard_rows(5, Parallel(0, 2)).tolist() + shard_rows(5, Parallel(1, 2)).tolist())
    [0, 1, 2, 3, 4]
    """
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(rows, generator=generator)[parallel.rank::parallel.size]


def _cuda_devices():
    return [torch.cuda.current_device()] if torch.cuda.is_initialized() else []


def _in_rows_plate(frames):
    return any(frame.name == ROWS for frame in frames)


def local_param_names(guide, parallel):
    """Names of an autoguide's per-row params (for latent sites in the rows plate).

    These have one entry per row of this rank's shard. A hand-written guide's
    params all count as shared. a joint-vector guide (``AutoMultivariateNormal``, ...) couples all its
    entries, so with per-row latents it cannot be split over ranks.
    """
    from causalppl.infer.autoguide import AutoContinuous

    sites = getattr(guide, "_sites", None) or {}
    local = [name for name, info in sites.items() if _in_rows_plate(info.get("frames", ()))]
    if local and isinstance(guide, AutoContinuous) and parallel.size > 1:
        raise ValueError(
            f"distributed fit: guide='mvn' couples the per-row latents {', '.join(map(repr, local))} across "
            "ranks; use guide='normal' or 'delta'"
        )
    prefix = getattr(guide, "prefix", "")
    return {f"{prefix}{part}{name}" for name in local for part in (".locs.", ".scales.", ".")}


class RankShare(Messenger):
    """Scale every sample site outside the rows plate by ``1 / size``: one rank's share of the global terms.

    >>> import causalppl as cp
    >>> def model():
    ...     cp.sample("w", cp.dist.Normal(0.0, 1.0))
    ...     with cp.plate("_rows", 3):
    ...         cp.sample("y", cp.dist.Normal(0.0, 1.0))
    >>> tr = cp.trace(RankShare(model, 2)).get_trace()
    >>> tr.nodes["w"]["scale"], tr.nodes["y"]["scale"]
    (0.5, 1.0)
    """

    def __init__(self, fn=None, size=1):
        super().__init__(fn)
        self.size = size

    def process_message(self, msg):
        # The plate is entered inside the model, so it is innermost and has already
        # added its frame when this handler sees the message.
        if msg["type"] == "sample" and not _in_rows_plate(msg["cond_indep_stack"]):
            msg["scale"] = msg["scale"] / self.size


class AllReduced:
    """An optimiser that first sums the gradients of the shared params over the ranks (one all-reduce).

    Per-row (local) params keep their own rank's gradient. The shared params
    are flattened in the order of their names, so every rank lays out the
    buffer alike.
    """

    def __init__(self, optim, parallel, stores, local):
        self.optim = optim
        self.parallel = parallel
        self.stores = stores
        self.local = set(local)

    def __call__(self, params):
        params = list(params)
        names = {id(leaf): name for store in self.stores for name, leaf in store.named_parameters()}
        shared = sorted((p for p in params if names.get(id(p)) not in self.local),
                        key=lambda p: names.get(id(p), ""))
        if shared:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in shared]
            flat = self.parallel.sum(torch.cat([g.reshape(-1).to(self.parallel.device()) for g in grads]))
            offset = 0
            for p in shared:
                p.grad = flat[offset:offset + p.numel()].view_as(p).to(p.device, p.dtype).clone()
                offset += p.numel()
        self.optim(params)


# ---------------------------------------------------------------------------
# Queries across ranks
# ---------------------------------------------------------------------------


def _moments(parallel, columns):
    """``[(n, mean, sd), ...]`` of 2-d ``columns`` (rows, d) over all ranks: exact two-pass combination."""
    counts = torch.tensor([float(c.shape[0]) for c in columns], dtype=torch.double)
    sums = torch.cat([c.sum(0).cpu() for c in columns])
    totals = parallel.sum(torch.cat([counts, sums]).to(parallel.device())).cpu()
    counts, sums = totals[:len(columns)], totals[len(columns):]
    means, offset = [], 0
    for n, c in zip(counts, columns, strict=True):
        means.append(sums[offset:offset + c.shape[1]] / n)
        offset += c.shape[1]
    squares = parallel.sum(torch.cat([((c.cpu() - m) ** 2).sum(0) for c, m in zip(columns, means, strict=True)])
                           .to(parallel.device())).cpu()
    out, offset = [], 0
    for n, c, m in zip(counts, columns, means, strict=True):
        n = float(n)
        sd = (squares[offset:offset + c.shape[1]] / (n - 1)).sqrt() if n > 1 else torch.zeros_like(m)
        offset += c.shape[1]
        out.append((int(n), m, sd))
    return out


def _as_columns(samples):
    samples = samples.detach().double()
    return samples.reshape(samples.shape[0], -1)


def summarize(samples, ess=None, parallel=None):
    """Node -> :class:`causalppl.causal.queries.Summary` of every rank's ``samples`` together.

    ``ess``: this rank's effective sample size (they add up over ranks).

    >>> import torch
    >>> summarize({"x": torch.tensor([1.0, 2.0, 3.0])})["x"].mean
    2.0
    """
    from causalppl.causal.queries import Summary

    parallel = parallel or Parallel.start()
    names = list(samples)
    moments = _moments(parallel, [_as_columns(samples[name]) for name in names])
    total_ess = float(parallel.sum(torch.tensor(float(ess), dtype=torch.double, device=parallel.device()))) \
        if ess is not None else None
    out = {}
    for name, (n, mean, sd) in zip(names, moments, strict=True):
        std = float(sd.mean())
        effective = total_ess if total_ess is not None else n
        out[name] = Summary(float(mean.mean()), std, std / math.sqrt(max(effective, 1)), n)
    return out


def sample(scm, n, **inputs):
    """This rank's share of ``n`` joint samples (each rank its own random stream): dict node -> tensor.

    Summaries over all ranks: :func:`summarize`.
    """
    parallel = Parallel.start()
    with parallel.own_random_stream():
        return scm.sample(parallel.share(n), **inputs)


def _shared_query_result():
    from causalppl.causal.queries import Distribution, QueryResult

    @dataclass
    class SharedQueryResult(QueryResult):
        """A query answered across ranks: ``samples`` are this rank's rows; summaries combine every rank's."""

        totals: dict = field(default_factory=dict)
        distributions: dict = field(default_factory=dict)

        def summary(self, node=None):
            if node is None:
                return dict(self.totals)
            self._require(node)
            return self.totals[node]

        def distribution(self, node):
            self._require(node)
            if node not in self.distributions:
                return QueryResult.distribution(self, node)  # raises: not discrete
            return self.distributions[node]

    return SharedQueryResult, Distribution


def _share_result(local, parallel):
    """A QueryResult whose summaries and distributions are over every rank's samples."""
    shared_cls, distribution_cls = _shared_query_result()
    totals = summarize(local.samples, local.ess, parallel)
    # Discrete nodes: P(level) is the mean of an indicator, reduced like any mean.
    indicators = {(node, code): (local.samples[node].detach().reshape(-1) == code).double()
                  for node, levels in local.levels.items() if node in local.samples for code in levels}
    reduced = summarize(indicators, local.ess, parallel) if indicators else {}
    ess = None
    if local.ess is not None:
        ess = float(parallel.sum(torch.tensor(float(local.ess), dtype=torch.double, device=parallel.device())))
    distributions = {}
    for node, levels in local.levels.items():
        if node not in local.samples:
            continue
        probs = {label: reduced[(node, code)].mean for code, label in levels.items()}
        n = totals[node].n
        effective = n if ess is None else ess
        stderr = {label: math.sqrt(p * (1 - p) / max(effective, 1)) for label, p in probs.items()}
        distributions[node] = distribution_cls(node, probs, stderr, n, local.query())
    return shared_cls(local.samples, local.do, local.evidence, local.ess, local.levels,
                      totals=totals, distributions=distributions)


def interventional(scm, do=None, evidence=None, n=10000, **inputs):
    """:func:`causalppl.causal.queries.interventional` with the ``n`` draws shared among the ranks.

    Each rank draws its share on its own random stream; ``summary``,
    ``mean`` and ``distribution`` combine all ranks' draws exactly (counts,
    sums, then squared deviations about the common mean).
    """
    from causalppl.causal import queries

    parallel = Parallel.start()
    with parallel.own_random_stream():
        local = queries.interventional(scm, do, evidence, parallel.share(n), **inputs)
    return _share_result(local, parallel)


def ate(scm, treatment, outcome, treated=1.0, control=0.0, evidence=None, n=10000, outcome_level=None,
        **inputs):
    """:func:`causalppl.causal.queries.ate` with the ``n`` draws shared among the ranks.

    Both arms share random numbers on each rank; the effect, its arms' means
    and its Monte Carlo standard error combine every rank's draws. The
    spread over a Bayesian posterior is not reported here (``sd``/``draws``
    are None): the interval covers Monte Carlo error.
    """
    from causalppl.causal import queries

    parallel = Parallel.start()
    with parallel.own_random_stream():
        local = queries.ate(scm, treatment, outcome, treated, control, evidence, parallel.share(n),
                            outcome_level=outcome_level, **inputs)
    high, low = local.treated_result, local.control_result
    code = queries._outcome_code(outcome, high.levels.get(outcome), outcome_level)
    rows = {"high": queries._outcome_rows(high, outcome, code), "low": queries._outcome_rows(low, outcome, code)}
    paired = not evidence
    if paired:
        rows["difference"] = queries._difference(high, low, outcome, code)
    sums = summarize(rows, None, parallel)
    if not paired:
        ess = {arm: float(parallel.sum(torch.tensor(float(r.ess if r.ess is not None else len(rows[arm])),
                                                      dtype=torch.double, device=parallel.device())))
               for arm, r in (("high", high), ("low", low))}
        stderr = math.hypot(sums["high"].std / math.sqrt(max(ess["high"], 1)),
                            sums["low"].std / math.sqrt(max(ess["low"], 1)))
    else:
        stderr = sums["difference"].stderr
    return replace(local, ate=sums["high"].mean - sums["low"].mean, stderr=stderr,
                   treated_mean=sums["high"].mean, control_mean=sums["low"].mean,
                   treated_result=_share_result(high, parallel), control_result=_share_result(low, parallel),
                   sd=None, draws=None,
                   covers=f"Monte Carlo error only (n={sums['high'].n} draws over {parallel.size} ranks)")


def is_main():
    """Whether this process is rank 0 (always, outside ``torchrun``): the one to write files and print.

    >>> is_main()
    True
    """
    return Parallel.start().is_main
