"""Pyro-style optimisers: a dict of ``torch.optim`` arguments, one torch optimiser.

``SGD({"lr": 0.01})`` is called by SVI with the parameters a step touched;
parameters seen for the first time join the one underlying torch optimiser
(a new param group), so there is never one optimiser per parameter.

>>> import torch, causalppl as cp
>>> opt = cp.optim.SGD({"lr": 0.1})
>>> w = torch.tensor(1.0, requires_grad=True)
>>> (2 * w).backward()
>>> opt([w]); round(w.item(), 4)
0.8
"""

from __future__ import annotations

import math
import sys
import types

import torch
import torch.optim.optimizer as _optimizer_module


class PyroOptim:
    """Wrap a ``torch.optim.Optimizer`` class with fixed or per-parameter arguments.

    ``optim_args`` is a dict of keyword arguments, or a callable
    ``(param_name) -> dict`` for per-parameter settings (the name is the param
    store name, or ``None`` for tensors not in the store).
    """

    def __init__(self, optim_constructor, optim_args=None, clip_args=None):
        if optim_args is None:
            optim_args = {}
        if not (isinstance(optim_args, dict) or callable(optim_args)):
            raise TypeError(f"optim_args must be a dict or a callable, got {type(optim_args).__name__}")
        self.optim_constructor = optim_constructor
        self.optim_args = optim_args
        self.clip_args = clip_args
        self.optimizer = None
        self._known = set()
        self._last = []  # the parameters of the last call, all known
        self._pending = {}  # per-param state loaded before the params were seen (Pyro's lazy load)

    @property
    def pt_optim_constructor(self):
        """The ``torch.optim.Optimizer`` class (Pyro's name)."""
        return self.optim_constructor

    @property
    def pt_optim_args(self):
        return self.optim_args

    @property
    def optim_objs(self):
        """Pyro's ``param -> torch optimiser`` map: here every param maps to the one shared optimiser."""
        return {param: self._torch_object() for param in self._known}

    def _torch_object(self):
        return self.optimizer

    def _args_for(self, param):
        if isinstance(self.optim_args, dict):
            return self.optim_args
        from causalppl.params import get_param_store

        store = get_param_store()
        name = next((n for n, leaf in store.named_parameters() if leaf is param), None)
        if _num_args(self.optim_args) == 2:  # Pyro's older form: (module_name, param_name)
            module, sep, rest = (name or "").partition("$$$")
            return self.optim_args(module if sep else None, rest if sep else name)
        return self.optim_args(name)

    def _add(self, params):
        last = self._last
        if len(last) == len(params) and all(a is b for a, b in zip(last, params)):
            return  # the same parameters as the step before (the usual case): nothing new
        self._last = params
        new = [p for p in params if p not in self._known]
        if not new:
            return
        self._known.update(new)
        if isinstance(self.optim_args, dict):
            groups = [{"params": new}]
        else:
            groups = [{"params": [p], **self._args_for(p)} for p in new]
        if self.optimizer is None:
            first_args = self.optim_args if isinstance(self.optim_args, dict) else {}
            self.optimizer = _construct(self.optim_constructor, groups, first_args, new)
        else:
            for group in groups:
                self.optimizer.add_param_group(group)
        if self._pending:
            names = _store_names()
            for p in new:
                saved = self._pending.pop(names.get(id(p)), None)
                if saved and saved.get("state"):
                    self.optimizer.state[p] = {k: v.clone() if torch.is_tensor(v) else v
                                               for k, v in next(iter(saved["state"].values())).items()}

    def __call__(self, params):
        """Take one step on ``params`` (an iterable of leaf tensors with gradients)."""
        params = list(params)
        if not params:
            return  # nothing to learn this step (e.g. a fully observed model without params)
        self._add(params)
        for p in params:
            # torch's fused CPU update reads a non-contiguous grad as if it were contiguous (a wrong step).
            if p.grad is not None and not p.grad.is_contiguous():
                p.grad = p.grad.contiguous()
        if self.clip_args:
            _clip(params, self.clip_args)
        _step(self.optimizer)

    def zero_grad(self):
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    def get_state(self):
        """The torch optimiser's ``state_dict()``, plus Pyro's view: each param-store name -> the state
        dict of that param alone (``{"state": {0: ...}, "param_groups": [...]}``)."""
        if self.optimizer is None:
            return {}
        full = self.optimizer.state_dict()
        state = dict(full)
        names = _store_names()
        for group, saved_group in zip(self.optimizer.param_groups, full["param_groups"], strict=True):
            for p, i in zip(group["params"], saved_group["params"], strict=True):
                name = names.get(id(p))
                if name is not None and name not in ("state", "param_groups"):
                    one = {k: v for k, v in saved_group.items() if k != "params"}
                    one["params"] = [0]
                    state[name] = {"state": {0: full["state"][i]} if i in full["state"] else {},
                                   "param_groups": [one]}
        return state

    def set_state(self, state):
        """Load :meth:`get_state`'s result; per-param entries for params not seen yet wait for them."""
        per_param = {k: v for k, v in state.items() if k not in ("state", "param_groups")}
        if "param_groups" not in state:
            self._pending.update(per_param)
            if self.optimizer is not None:
                names = {name: p for p in self._known if (name := _store_names().get(id(p))) is not None}
                for name in list(self._pending):
                    p = names.get(name)
                    saved = self._pending.pop(name) if p is not None else None
                    if saved and saved.get("state"):
                        self.optimizer.state[p] = dict(next(iter(saved["state"].values())))
            return
        if self.optimizer is None:
            raise RuntimeError("the optimizer has no parameters yet; take one step before set_state")
        self.optimizer.load_state_dict({"state": state["state"], "param_groups": state["param_groups"]})

    def save(self, filename):
        """Write :meth:`get_state` to ``filename`` (``torch.save``)."""
        torch.save(self.get_state(), filename)

    def load(self, filename, map_location=None):
        """Read a state written by :meth:`save` (per-param entries apply when their params join)."""
        state = torch.load(filename, map_location=map_location, weights_only=False)
        self.set_state({k: v for k, v in state.items() if k not in ("state", "param_groups")})


def _num_args(fn):
    import inspect

    try:
        return len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return 1


def _store_names():
    from causalppl.params import get_param_store

    return {id(leaf): name for name, leaf in get_param_store().named_parameters()}


def _clip(params, clip_args):
    """Pyro's ``clip_args``: ``clip_norm`` (total gradient norm) and/or ``clip_value`` (each entry)."""
    args = dict(clip_args)
    if "clip_norm" in args:
        torch.nn.utils.clip_grad_norm_(params, args.pop("clip_norm"))
    if "clip_value" in args:
        torch.nn.utils.clip_grad_value_(params, args.pop("clip_value"))
    if args:
        torch.nn.utils.clip_grad_norm_(params, **args)


def _step(optimizer):
    """``optimizer.step()``, without torch's per-call wrapper when nothing listens to it.

    torch wraps every ``step`` in a profiler range and runs registered hooks;
    with no hook, no profiler and no scheduler watching (a scheduler patches
    the instance's ``step``), the wrapped function is called directly.
    """
    raw = getattr(type(optimizer).step, "__wrapped__", None)
    if (raw is None or "step" in vars(optimizer) or optimizer._optimizer_step_pre_hooks
            or optimizer._optimizer_step_post_hooks or _optimizer_module._global_optimizer_pre_hooks
            or _optimizer_module._global_optimizer_post_hooks or torch.autograd._profiler_enabled()):
        return optimizer.step()
    if type(optimizer) in _FUSED_UPDATES and _fused_update(optimizer):
        return None
    return raw(optimizer)


def _fused_update(optimizer):
    """The fused Adam/SGD update of torch's ``step``, called without its per-parameter Python; False: not taken.

    Taken only where torch's ``step`` would make exactly this call: every
    group fused, no amsgrad / differentiable / capturable / decoupled decay,
    no grad scaler, and the state of every parameter with a gradient made by
    an earlier step (torch's own first step makes it); one device and dtype.
    Parameters without a gradient are skipped, as torch skips them.
    """
    adam = type(optimizer) is torch.optim.Adam
    if getattr(optimizer, "grad_scale", None) is not None or getattr(optimizer, "found_inf", None) is not None:
        return False
    state = optimizer.state
    work, first = [], None
    for group in optimizer.param_groups:
        if not group.get("fused") or group.get("differentiable") or isinstance(group["lr"], torch.Tensor):
            return False
        if adam and (group["amsgrad"] or group["capturable"] or group["decoupled_weight_decay"]
                     or any(isinstance(beta, torch.Tensor) for beta in group["betas"])):
            return False
        params, grads, buffers, more = [], [], [], []
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if first is None:
                first = p
            if grad.is_sparse or p.is_complex() or p.device != first.device or p.dtype != first.dtype:
                return False
            entry = state.get(p)
            if adam:
                if not entry or "exp_avg" not in entry:
                    return False
                buffers.append(entry["exp_avg"])
                more.append((entry["exp_avg_sq"], entry["step"]))
                params.append(p)
                grads.append(grad)
                continue
            if group["momentum"] != 0:
                if not entry or entry.get("momentum_buffer") is None:
                    return False
                buffers.append(entry["momentum_buffer"])
            params.append(p)
            grads.append(grad)
        work.append((group, params, grads, buffers, more))
    with torch.no_grad():
        for group, params, grads, buffers, more in work:
            if not params:
                continue
            if adam:
                squares, steps = [pair[0] for pair in more], [pair[1] for pair in more]
                torch._foreach_add_(steps, 1)
                beta1, beta2 = group["betas"]
                torch._fused_adam_(params, grads, buffers, squares, [], steps, amsgrad=False, lr=group["lr"],
                                   beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                   maximize=group["maximize"], grad_scale=None, found_inf=None)
            else:
                torch._fused_sgd_(params, grads, buffers if group["momentum"] != 0 else [],
                                  weight_decay=group["weight_decay"], momentum=group["momentum"], lr=group["lr"],
                                  dampening=group["dampening"], nesterov=group["nesterov"],
                                  maximize=group["maximize"], is_first_step=False, grad_scale=None, found_inf=None)
    return True


# torch optimisers with a fused update (one kernel over all params of a device) on CPU and CUDA.
_FUSED = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.Adagrad)
_FUSED_UPDATES = (torch.optim.Adam, torch.optim.SGD)  # whose fused update _fused_update calls directly


def _construct(constructor, groups, args, params):
    """``constructor(groups, **args)``, fused where torch has a fused update and the caller chose none.

    The fused update computes the same rule in one pass over each tensor
    instead of a dozen Python-dispatched ops: the difference is rounding.
    """
    fusable = (constructor in _FUSED and "fused" not in args and "foreach" not in args
               and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params))
    if fusable:
        try:
            return constructor(groups, fused=True, **args)
        except (RuntimeError, TypeError, ValueError):
            pass  # an option the fused update lacks (e.g. differentiable=True): the usual one
    return constructor(groups, **args)


def SGD(optim_args=None, clip_args=None):
    """``torch.optim.SGD`` with Pyro's dict-of-arguments interface."""
    return PyroOptim(torch.optim.SGD, optim_args, clip_args)


def Adam(optim_args=None, clip_args=None):
    """``torch.optim.Adam`` with Pyro's dict-of-arguments interface."""
    return PyroOptim(torch.optim.Adam, optim_args, clip_args)


def AdamW(optim_args=None, clip_args=None):
    return PyroOptim(torch.optim.AdamW, optim_args, clip_args)


def RMSprop(optim_args=None, clip_args=None):
    return PyroOptim(torch.optim.RMSprop, optim_args, clip_args)


def Adagrad(optim_args=None, clip_args=None):
    return PyroOptim(torch.optim.Adagrad, optim_args, clip_args)


# ---------------------------------------------------------------------------
# ClippedAdam
# ---------------------------------------------------------------------------


class _ClippedAdamOptimizer(torch.optim.Optimizer):
    """Adam whose gradients are clamped element-wise and whose lr decays each step.

    Each step multiplies the group's ``lr`` by ``lrd``, clamps every gradient
    entry to ``[-clip_norm, clip_norm]`` and takes an Adam step (so step ``t``,
    counting from 1, uses ``lr * lrd**t``, as in Pyro).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 clip_norm=10.0, lrd=1.0):
        if lr <= 0:
            raise ValueError(f"ClippedAdam: lr must be positive, got {lr}")
        if clip_norm <= 0:
            raise ValueError(f"ClippedAdam: clip_norm must be positive, got {clip_norm}")
        if not lrd > 0:
            raise ValueError(f"ClippedAdam: lrd (lr factor per step) must be positive, got {lrd}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        clip_norm=clip_norm, lrd=lrd)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # As Pyro: decay first, so step t (counting from 1) uses lr * lrd**t.
            group["lr"] = group["lr"] * group["lrd"]
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params)
        return loss

    def _update(self, group, params):
        """The Adam update of ``params``, each op once over all of them (``torch._foreach_*``)."""
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params]
        clip = group["clip_norm"]
        if clip != math.inf:
            torch._foreach_clamp_min_(grads, -clip)
            torch._foreach_clamp_max_(grads, clip)
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        states = [self.state[p] for p in params]
        for p, state in zip(params, states, strict=True):
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denoms, group["eps"])
        # Params that joined later have taken fewer steps: one update per step count.
        by_step = {}
        for index, state in enumerate(states):
            by_step.setdefault(state["step"], []).append(index)
        for step, indices in by_step.items():
            step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
            torch._foreach_addcdiv_([params[i] for i in indices], [exp_avgs[i] for i in indices],
                                    [denoms[i] for i in indices], value=-step_size)


def ClippedAdam(optim_args=None, clip_args=None):
    """Adam with element-wise gradient clamping and per-step learning-rate decay.

    ``optim_args``: ``lr`` (1e-3), ``betas`` ((0.9, 0.999)), ``eps`` (1e-8),
    ``weight_decay`` (0), ``clip_norm`` (10.0: every gradient entry is clamped
    to ``[-clip_norm, clip_norm]``) and ``lrd`` (1.0: step ``t`` uses
    ``lr * lrd**t``).

    >>> import torch, causalppl as cp
    >>> opt = cp.optim.ClippedAdam({"lr": 0.1, "clip_norm": 1.0})
    >>> w = torch.tensor(0.0, requires_grad=True)
    >>> (1000 * w).backward()
    >>> opt([w]); round(w.grad.item(), 1), round(w.item(), 2)
    (1.0, -0.1)
    """
    return PyroOptim(_ClippedAdamOptimizer, optim_args, clip_args)


# ``causalppl.optim.clipped_adam.ClippedAdam`` is the torch optimiser itself, as in Pyro.
clipped_adam = types.ModuleType("causalppl.optim.clipped_adam", "The ClippedAdam torch optimiser.")
_ClippedAdamOptimizer.__name__ = _ClippedAdamOptimizer.__qualname__ = "ClippedAdam"
_ClippedAdamOptimizer.__module__ = clipped_adam.__name__
clipped_adam.ClippedAdam = _ClippedAdamOptimizer
sys.modules[clipped_adam.__name__] = clipped_adam


def DCTAdam(optim_args=None, clip_args=None):
    """Adam with a frequency-domain view of time-series params (see :mod:`causalppl.optim_dct_adam`).

    ``optim_args`` as :func:`ClippedAdam`'s, plus ``subsample_aware`` (False).

    >>> import torch, causalppl as cp
    >>> opt = cp.optim.DCTAdam({"lr": 0.1})
    >>> w = torch.tensor([0.0, 0.0], requires_grad=True)
    >>> w.sum().backward(); opt([w]); [round(v, 2) for v in w.tolist()]
    [-0.1, -0.1]
    """
    from causalppl.optim_dct_adam import DCTAdam as _DCTAdam

    return PyroOptim(_DCTAdam, optim_args, clip_args)


# ---------------------------------------------------------------------------
# Learning-rate schedulers
# ---------------------------------------------------------------------------


class PyroLRScheduler(PyroOptim):
    """A learning-rate scheduler around one optimiser, usable wherever SVI takes an optim.

    ``scheduler_args`` holds ``"optimizer"`` (a ``torch.optim.Optimizer``
    class, or a causalppl optimiser factory such as ``cp.optim.Adam``),
    ``"optim_args"`` (its arguments, a dict or a callable ``name -> dict``),
    and the scheduler's own keyword arguments. SVI calls it like any
    optimiser; call :meth:`step` yourself (once per step or epoch, as the
    scheduler expects) to advance the schedule — ``ReduceLROnPlateau`` takes
    the loss: ``scheduler.step(loss)``.

    >>> import torch, causalppl as cp
    >>> sched = cp.optim.ExponentialLR({"optimizer": torch.optim.SGD,
    ...                                 "optim_args": {"lr": 1.0}, "gamma": 0.5})
    >>> w = torch.tensor(0.0, requires_grad=True)
    >>> w.backward(torch.tensor(1.0)); sched([w]); sched.step()
    >>> sched.get_last_lr()
    [0.5]
    """

    def __init__(self, scheduler_constructor, scheduler_args, clip_args=None):
        if not isinstance(scheduler_args, dict) or "optimizer" not in scheduler_args:
            raise TypeError(
                f"{getattr(scheduler_constructor, '__name__', 'scheduler')}: expected a dict with "
                "'optimizer' (e.g. torch.optim.SGD), 'optim_args' and the scheduler's arguments, "
                f"got {scheduler_args!r}"
            )
        scheduler_args = dict(scheduler_args)
        optimizer = scheduler_args.pop("optimizer")
        optim_args = scheduler_args.pop("optim_args", {})
        if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
            constructor = optimizer
        elif callable(optimizer):
            wrapped = optimizer(optim_args)
            if not isinstance(wrapped, PyroOptim):
                raise TypeError(
                    f"'optimizer' must be a torch.optim.Optimizer class or a causalppl.optim factory, "
                    f"got {optimizer!r}"
                )
            constructor = wrapped.optim_constructor
            clip_args = clip_args if clip_args is not None else wrapped.clip_args
        else:
            raise TypeError(f"'optimizer' must be a torch.optim.Optimizer class, got {optimizer!r}")
        super().__init__(constructor, optim_args, clip_args)
        self.scheduler_constructor = scheduler_constructor
        self.scheduler_args = scheduler_args
        self.scheduler = None

    def _add(self, params):
        had_groups = 0 if self.optimizer is None else len(self.optimizer.param_groups)
        super()._add(params)
        if self.optimizer is None:
            return
        if self.scheduler is None:
            self.scheduler = self.scheduler_constructor(self.optimizer, **self.scheduler_args)
            return
        # Parameters that appear after the scheduler was built join its schedule
        # with the settings of the first group (schedulers keep per-group state).
        groups = self.optimizer.param_groups
        for group in groups[had_groups:]:
            for key, value in groups[0].items():
                if key != "params":
                    group.setdefault(key, value)
            group["lr"] = groups[0]["lr"]
            for attr in ("base_lrs", "min_lrs"):
                values = getattr(self.scheduler, attr, None)
                if isinstance(values, list) and values:
                    values.append(values[0])

    @property
    def pt_scheduler_constructor(self):
        """The ``torch.optim.lr_scheduler`` class (Pyro's name)."""
        return self.scheduler_constructor

    def _torch_object(self):
        return self.scheduler

    def step(self, *args, **kwargs):
        """Advance the schedule (``ReduceLROnPlateau``: pass the loss)."""
        if self.scheduler is not None:
            self.scheduler.step(*args, **kwargs)

    def get_last_lr(self):
        """The learning rates of the optimiser's parameter groups now."""
        if self.optimizer is None:
            return []
        return [group["lr"] for group in self.optimizer.param_groups]

    def get_state(self):
        state = {"optimizer": super().get_state()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def set_state(self, state):
        super().set_state(state["optimizer"])
        if "scheduler" in state and self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])


def _scheduler(torch_scheduler, example_args):
    def factory(scheduler_args, clip_args=None):
        return PyroLRScheduler(torch_scheduler, scheduler_args, clip_args)

    name = torch_scheduler.__name__
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (
        f"``torch.optim.lr_scheduler.{name}`` as a causalppl optimiser (see :class:`PyroLRScheduler`).\n\n"
        f"    >>> import torch, causalppl as cp\n"
        f"    >>> opt = cp.optim.{name}({{'optimizer': torch.optim.SGD, 'optim_args': {{'lr': 0.1}}, "
        f"{example_args}}})\n"
        f"    >>> isinstance(opt, cp.optim.PyroLRScheduler)\n"
        f"    True\n"
    )
    return factory


_lr = torch.optim.lr_scheduler
ExponentialLR = _scheduler(_lr.ExponentialLR, "'gamma': 0.99")
StepLR = _scheduler(_lr.StepLR, "'step_size': 100, 'gamma': 0.5")
MultiStepLR = _scheduler(_lr.MultiStepLR, "'milestones': [100, 200], 'gamma': 0.5")
CosineAnnealingLR = _scheduler(_lr.CosineAnnealingLR, "'T_max': 1000")
ReduceLROnPlateau = _scheduler(_lr.ReduceLROnPlateau, "'factor': 0.5, 'patience': 10")
OneCycleLR = _scheduler(_lr.OneCycleLR, "'max_lr': 0.1, 'total_steps': 1000")
LambdaLR = _scheduler(_lr.LambdaLR, "'lr_lambda': lambda epoch: 0.99 ** epoch")
MultiplicativeLR = _scheduler(_lr.MultiplicativeLR, "'lr_lambda': lambda epoch: 0.99")
CosineAnnealingWarmRestarts = _scheduler(_lr.CosineAnnealingWarmRestarts, "'T_0': 100")
CyclicLR = _scheduler(_lr.CyclicLR, "'base_lr': 0.01, 'max_lr': 0.1")
