"""Checkpoints of an SVI fit: the fitted-SCM file, plus what resuming the run needs.

A checkpoint is :func:`causalppl.graph.persist.to_data` of the SCM (so
``cp.load(path)`` reads it as the SCM fitted so far) with one more entry,
``"checkpoint"``: the step count, the losses, and per rank the guide's params,
the optimiser's state and the random streams. Rank 0 gathers the ranks'
states and writes the file atomically (:func:`causalppl.params.atomic_torch_save`),
so a killed worker leaves the last complete checkpoint behind.

>>> import os, tempfile, torch, causalppl as cp
>>> path = os.path.join(tempfile.mkdtemp(), "fit.cpm")
>>> scm = cp.SCM.from_graph([("x", "y")])
>>> data = {"x": torch.arange(8.0), "y": 2 * torch.arange(8.0)}
>>> _ = scm.fit(data, method="svi", steps=4, checkpoint=path, checkpoint_every=2, progress=False, seed=0)
>>> read(path)["step"], cp.load(path).nodes
(4, ('x', 'y'))
"""

from __future__ import annotations

import os

import torch

from causalppl.params import atomic_torch_save, check_save_path


def read(path):
    """The ``"checkpoint"`` entry of the checkpoint at ``path``; a ValueError naming it if it has none."""
    from causalppl.graph.persist import load

    load(path)  # the same checks as for any fitted-SCM file
    data = torch.load(path, weights_only=True)
    if "checkpoint" not in data:
        raise ValueError(f"{path}: a fitted-SCM file, but not a checkpoint (no SVI run to resume)")
    return data["checkpoint"]


class Checkpoints:
    """Writing checkpoints every ``every`` steps to ``path``, and resuming from ``resume``.

    Does nothing when neither is given.
    """

    def __init__(self, path=None, every=None, resume=None, parallel=None):
        from causalppl.causal.distributed import Parallel

        if every is not None and (int(every) != every or every < 1):
            raise ValueError(f"checkpoint_every must be a positive number of steps, got {every!r}")
        if every is not None and path is None:
            raise ValueError("checkpoint_every needs checkpoint=path")
        if path is not None:
            check_save_path(path)  # say so now, not after the first steps
        if resume is not None and not os.path.exists(resume):
            raise FileNotFoundError(f"resume={os.fspath(resume)!r}: no checkpoint there")
        self.path = path
        self.every = every
        self.resume = resume
        self.parallel = parallel or Parallel()

    def __bool__(self):
        return self.path is not None or self.resume is not None

    # -- writing -----------------------------------------------------------------

    def after_step(self, step, steps, result, svi):
        """Write a checkpoint after ``step`` steps when it is due (every ``every`` steps, and the last)."""
        if self.path is None:
            return
        if step == steps or (self.every is not None and step % self.every == 0):
            self.write(step, result, svi.optim)

    def finish(self, result):
        """A fit without SVI steps: write the fitted SCM (step 0) if a checkpoint path was given."""
        if self.path is not None:
            self.write(0, result, None)

    def write(self, step, result, optim):
        """Gather every rank's state on rank 0, which writes the file."""
        from causalppl.graph.persist import to_data

        mine = {
            "guide_params": result.guide_params.get_state(),
            "optimizer": _optimizer_state(optim, (result.scm.params, result.guide_params)),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
        }
        ranks = self.parallel.gather(mine)
        if not self.parallel.is_main:
            return
        data = to_data(result.scm)
        data["checkpoint"] = {"step": step, "losses": [float(x) for x in result.losses],
                              "world_size": self.parallel.size, "ranks": ranks}
        atomic_torch_save(data, self.path)

    # -- resuming ----------------------------------------------------------------

    def resume_svi(self, result, svi):
        """Restore params, optimiser, losses and random streams; return the step to continue from."""
        if self.resume is None:
            return 0
        from causalppl.graph.persist import load

        saved = read(self.resume)
        if saved["world_size"] != self.parallel.size:
            raise ValueError(f"{self.resume}: written by {saved['world_size']} ranks, resumed by "
                             f"{self.parallel.size}; resume with the same number of ranks")
        mine = saved["ranks"][self.parallel.rank]
        result.scm.params.set_state(load(self.resume).params.get_state())
        result.guide_params.set_state(mine["guide_params"])
        # An autoguide sets itself up (drawing from the random stream) on its first
        # call: let it now, so the stream restored below is the one the next step sees.
        with torch.no_grad():
            svi.guide()
        if mine["optimizer"] is not None:
            _restore_optimizer(svi.optim, mine["optimizer"], (result.scm.params, result.guide_params))
        torch.set_rng_state(mine["rng"])
        if mine["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(mine["cuda_rng"])
        result.losses[:] = saved["losses"]
        return saved["step"]


def _innermost(optim):
    """The causalppl optimiser under the wrappers that filter or reduce its params (``.optim``)."""
    while optim is not None and not hasattr(optim, "optimizer") and hasattr(optim, "optim"):
        optim = optim.optim
    if optim is None or not hasattr(optim, "optimizer"):
        return None
    return optim


def _optimizer_state(optim, stores):
    """The torch optimiser's state and, per param group, its params' names (to rebuild the groups)."""
    inner = _innermost(optim)
    if inner is None or inner.optimizer is None:
        return None
    names = {id(leaf): name for store in stores for name, leaf in store.named_parameters()}
    groups = [[names[id(p)] for p in group["params"]] for group in inner.optimizer.param_groups]
    return {"groups": groups, "state": inner.get_state()}


def _restore_optimizer(optim, saved, stores):
    inner = _innermost(optim)
    if inner is None:
        raise ValueError("resume: the optimiser is not a causalppl.optim optimiser; its state cannot be restored")
    leaves = {name: leaf for store in stores for name, leaf in store.named_parameters()}
    for group in saved["groups"]:
        inner._add([leaves[name] for name in group])
    inner.set_state(saved["state"])
