"""``PyroModule``: torch ``nn.Module`` s whose attributes are params and sample sites.

A :class:`PyroModule` is an ``nn.Module`` in which

- ``self.x = PyroParam(init, constraint)`` makes ``self.x`` a constrained
  learnable parameter (its unconstrained leaf is ``self.x_unconstrained``);
- ``self.w = PyroSample(prior)`` makes every read of ``self.w`` inside the
  module's ``forward`` a sample site (``prior`` is a distribution, or a
  function ``prior(self) -> distribution``); one draw per call, cached;
- an ordinary ``nn.Parameter`` is a ``param`` site too.

Sites are named by the attribute path from the outermost PyroModule, as in
Pyro: ``self.linear.weight`` is the site ``"linear.weight"``. While a
module runs, its params live in the active param store (the global one, or
a ``param_scope``'s), so SVI's optimiser sees them with the rest; outside a
run the attributes are plain tensors.

``PyroModule[nn.Linear](3, 1)`` is an ``nn.Linear`` that is also a
PyroModule, so a Bayesian linear layer is

>>> import torch, causalppl as cp
>>> from torch import nn
>>> from causalppl.nn import PyroModule, PyroSample
>>> cp.clear_param_store()
>>> linear = PyroModule[nn.Linear](3, 1)
>>> linear.weight = PyroSample(cp.dist.Normal(0.0, 1.0).expand([1, 3]).to_event(2))
>>> tr = cp.handlers.trace(linear).get_trace(torch.ones(2, 3))
>>> tr.nodes["weight"]["type"], tr.nodes["bias"]["type"]
('sample', 'param')
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import torch
from torch import nn
from torch.distributions import constraints, transform_to

from causalppl import settings
from causalppl.params import _SCOPES, LeafRef, ParamStore, get_param_store
from causalppl.runtime import HANDLER_STACK, apply_stack, deterministic, draw, new_message, param, sample

# How Pyro names the params of a plain ``nn.Module`` held by a PyroModule.
MODULE_SEPARATOR = "$$$"


def _make_name(prefix, name):
    return f"{prefix}.{name}" if prefix else name


class PyroParam:
    """A learnable attribute of a :class:`PyroModule`: ``PyroParam(init_value, constraint, event_dim)``.

    ``init_value`` is a tensor or a zero-argument function returning one.
    Also a decorator of a method returning the initial value, with or
    without arguments: ``@PyroParam`` / ``@PyroParam(constraint=..., event_dim=1)``.
    """

    __slots__ = ("init_value", "constraint", "event_dim")

    def __init__(self, init_value=None, constraint=constraints.real, event_dim=None):
        self.init_value = init_value
        self.constraint = constraint
        self.event_dim = event_dim

    def __iter__(self):
        return iter((self.init_value, self.constraint, self.event_dim))

    def __repr__(self):
        return f"PyroParam({self.init_value!r}, {self.constraint}, event_dim={self.event_dim})"

    def __call__(self, init_value):
        # ``@PyroParam(constraint=...)`` on a method: the method is the init.
        if self.init_value is not None:
            raise TypeError("PyroParam(...) is called as a decorator only when it has no init_value")
        return PyroParam(init_value, self.constraint, self.event_dim)

    def __get__(self, obj, obj_type=None):
        # ``@PyroParam`` on a method: the first read creates the param from it.
        if obj is None:
            return self
        name = self.init_value.__name__
        if name not in obj.__dict__["_pyro_params"]:
            setattr(obj, name, PyroParam(functools.partial(self.init_value, obj), self.constraint, self.event_dim))
        return obj.__getattr__(name)


class PyroSample:
    """A random attribute of a :class:`PyroModule`: ``PyroSample(prior)``.

    ``prior`` is a distribution or a function ``prior(module)`` returning one
    (it may read other attributes, which may themselves be samples). Also a
    decorator of such a method (``@PyroSample``).
    """

    __slots__ = ("prior",)

    def __init__(self, prior):
        self.prior = prior

    def __repr__(self):
        return f"PyroSample({self.prior!r})"

    def __get__(self, obj, obj_type=None):
        if obj is None:
            return self
        name = self.prior.__name__
        obj.__dict__["_pyro_samples"].setdefault(name, self.prior)
        return obj.__getattr__(name)


class _Context:
    """Shared by a PyroModule and its PyroModule children: which run is active, and its draws.

    With the setting ``module_local_params`` (on when the module was made), a
    run reads and creates ``param`` sites in a store of the module's own.
    """

    def __init__(self):
        self.active = 0
        self.cache = {}
        self.used = False
        self.local_store = ParamStore() if settings.get("module_local_params") else None

    def __enter__(self):
        if not self.active and self.local_store is not None:
            _SCOPES.append(self.local_store)
        self.active += 1
        self.used = True

    def __exit__(self, exc_type, exc_value, traceback):
        self.active -= 1
        if not self.active:
            self.cache.clear()  # every run draws its samples afresh
            if self.local_store is not None and _SCOPES and _SCOPES[-1] is self.local_store:
                _SCOPES.pop()


class _PyroModuleMeta(type):
    _cache = {}

    def __getitem__(cls, Module):
        """``PyroModule[nn.Linear]``: the class that is both (made once per class)."""
        if not (isinstance(Module, type) and issubclass(Module, nn.Module)):
            raise TypeError(f"PyroModule[...] takes a torch.nn.Module subclass, got {Module!r}")
        if issubclass(Module, PyroModule):
            return Module
        if Module is nn.Module:
            return PyroModule
        if Module in _PyroModuleMeta._cache:
            return _PyroModuleMeta._cache[Module]
        bases = [PyroModule[base] for base in Module.__bases__ if issubclass(base, nn.Module)]

        class result(Module, *bases):
            def __reduce__(self):
                # The class is made at run time, so pickle it by the torch class it wraps.
                state = getattr(self, "__getstate__", self.__dict__.copy)()
                return _PyroModuleMeta._New, (Module,), state

        result.__name__ = result.__qualname__ = "Pyro" + Module.__name__
        _PyroModuleMeta._cache[Module] = result
        return result

    class _New:
        def __init__(self, Module):
            self.__class__ = PyroModule[Module]


class PyroModule(nn.Module, metaclass=_PyroModuleMeta):
    """An ``nn.Module`` whose params and :class:`PyroSample` attributes are sites (module docstring).

    >>> import torch, causalppl as cp
    >>> from causalppl.nn import PyroModule, PyroParam, PyroSample
    >>> cp.clear_param_store()
    >>> class Model(PyroModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.scale = PyroParam(torch.tensor(2.0), constraint=cp.constraints.positive)
    ...         self.loc = PyroSample(cp.dist.Normal(0.0, 1.0))
    ...     def forward(self):
    ...         return cp.sample("y", cp.dist.Normal(self.loc, self.scale), obs=torch.tensor(0.5))
    >>> tr = cp.handlers.trace(Model()).get_trace()
    >>> [(name, site["type"]) for name, site in tr.nodes.items() if site["type"] in ("param", "sample")]
    [('loc', 'sample'), ('scale', 'param'), ('y', 'sample')]
    >>> sorted(cp.get_param_store().keys())
    ['scale']
    """

    def __init__(self, name=""):
        self._pyro_name = name
        self._pyro_context = _Context()  # shared with PyroModule children
        self._pyro_params = OrderedDict()
        self._pyro_samples = OrderedDict()
        super().__init__()

    def __call__(self, *args, **kwargs):
        with self._pyro_context:
            result = super().__call__(*args, **kwargs)
        context = self._pyro_context
        if not context.active and context.local_store is not None and settings.get("validate_poutine"):
            owned = {id(p) for p in self.parameters()}
            if any(id(leaf) not in owned for _, leaf in context.local_store.named_parameters()):
                raise NotImplementedError(
                    "cp.param statements for params the module does not own are not supported in "
                    "PyroModules with module_local_params")
        return result

    def _local(self):
        return self._pyro_context.local_store is not None

    def _pyro_get_fullname(self, name):
        return _make_name(self._pyro_name, name)

    def _pyro_set_supermodule(self, name, context):
        self._pyro_name = name
        self._pyro_context = context
        for key, value in self._modules.items():
            if isinstance(value, PyroModule):
                value._pyro_set_supermodule(_make_name(name, key), context)

    def add_module(self, name, module):
        if isinstance(module, PyroModule):
            module._pyro_set_supermodule(_make_name(self._pyro_name, name), self._pyro_context)
        super().add_module(name, module)

    def named_pyro_params(self, prefix="", recurse=True):
        """``(name, value)`` of every param, constrained ones under their own names (not ``*_unconstrained``)."""
        yield from self._named_members(_pyro_params_of, prefix=prefix, recurse=recurse)

    # -- attribute access: where params and samples become sites -----------------

    def __getattr__(self, name):
        pyro_params = self.__dict__.get("_pyro_params")
        if pyro_params is not None and name in pyro_params:
            return self._read_pyro_param(name, *pyro_params[name])
        pyro_samples = self.__dict__.get("_pyro_samples")
        if pyro_samples is not None and name in pyro_samples:
            return self._read_pyro_sample(name, pyro_samples[name])
        result = super().__getattr__(name)
        if self.__dict__.get("_pyro_context") is None or not self._pyro_context.active:
            return result
        if isinstance(result, nn.Parameter) and not name.endswith("_unconstrained"):
            fullname = self._pyro_get_fullname(name)
            if self._local():
                return _local_param(fullname, result, result)
            _bind(fullname, result)
            return param(fullname)
        if isinstance(result, nn.Module) and not isinstance(result, PyroModule):
            # A plain torch module: its params are sites named as pyro.module names them.
            prefix = self._pyro_get_fullname(name) + MODULE_SEPARATOR
            for param_name, value in result.named_parameters():
                if self._local():
                    _local_param(prefix + param_name, value, value)
                else:
                    _bind(prefix + param_name, value)
                    param(prefix + param_name)
        return result

    def _read_pyro_param(self, name, constraint, event_dim):
        leaf = getattr(self, name + "_unconstrained")
        if not self._pyro_context.active:
            value = transform_to(constraint)(leaf)
            value.unconstrained = LeafRef(leaf)
            return value
        fullname = self._pyro_get_fullname(name)
        if self._local():
            return _local_param(fullname, transform_to(constraint)(leaf), leaf, constraint, event_dim)
        _bind(fullname, leaf, constraint)
        return param(fullname, event_dim=event_dim)

    def _read_pyro_sample(self, name, prior):
        context = self._pyro_context
        if not context.active:
            prior = prior if hasattr(prior, "sample") else prior(self)
            return draw(prior, name) if hasattr(prior, "sample") else prior
        fullname = self._pyro_get_fullname(name)
        value = context.cache.get(fullname)
        if value is None:
            if not hasattr(prior, "sample"):
                prior = prior(self)
            if isinstance(prior, torch.Tensor):
                value = deterministic(fullname, prior)
            else:
                value = sample(fullname, prior)
            context.cache[fullname] = value
        return value

    def __setattr__(self, name, value):
        if isinstance(value, PyroModule):
            self._forget(name)
            value._pyro_set_supermodule(self._pyro_get_fullname(name), self._pyro_context)
            super().__setattr__(name, value)
            return
        if isinstance(value, PyroParam):
            self._forget(name)
            init_value, constraint, event_dim = value
            self._pyro_params[name] = constraint, event_dim
            with torch.no_grad():
                if callable(init_value) and not isinstance(init_value, torch.Tensor):
                    init_value = init_value()
                init_value = torch.as_tensor(init_value, dtype=torch.get_default_dtype()) \
                    if not isinstance(init_value, torch.Tensor) else init_value
                leaf = nn.Parameter(transform_to(constraint).inv(init_value.detach()).clone())
            super().__setattr__(name + "_unconstrained", leaf)
            if self._pyro_context.active:
                getattr(self, name)  # registers it in the param store now
            return
        if isinstance(value, nn.Parameter):
            self._forget(name)
            super().__setattr__(name, value)
            return
        if isinstance(value, torch.Tensor) and name in self.__dict__.get("_pyro_params", ()):
            # ``module.x = tensor``: a new value for an existing PyroParam.
            constraint, _ = self._pyro_params[name]
            leaf = getattr(self, name + "_unconstrained")
            with torch.no_grad():
                leaf.data = transform_to(constraint).inv(value.detach())
            return
        if isinstance(value, PyroSample):
            self._forget(name)
            self._pyro_samples[name] = value.prior
            return
        super().__setattr__(name, value)

    def _forget(self, name):
        """Drop whatever attribute ``name`` was, before it is set anew."""
        try:
            delattr(self, name)
        except AttributeError:
            pass

    def __delattr__(self, name):
        store = get_param_store()
        fullname = self._pyro_get_fullname(name)
        if name in self._parameters:
            del self._parameters[name]
            if self._pyro_context.used and fullname in store:
                del store[fullname]
            return
        if name in self._pyro_params:
            delattr(self, name + "_unconstrained")
            del self._pyro_params[name]
            if self._pyro_context.used and fullname in store:
                del store[fullname]
            return
        if name in self._pyro_samples:
            del self._pyro_samples[name]
            return
        if name in self._modules:
            del self._modules[name]
            if self._pyro_context.used:
                for key in store.keys():
                    if key == fullname or key.startswith((fullname + ".", fullname + MODULE_SEPARATOR)):
                        del store[key]
            return
        super().__delattr__(name)


def _bind(fullname, leaf, constraint=constraints.real):
    """Make the module's own tensor ``leaf`` the active store's entry ``fullname``.

    If the store already holds another tensor of that shape under the name
    (loaded from a file, or a second module with the same site names), its
    value is kept: copied into ``leaf``, as :func:`causalppl.module` does.
    """
    store = get_param_store()
    if fullname in store:
        old = store.leaf(fullname)
        if old is leaf:
            return
        value = store[fullname].detach()
        if value.shape == leaf.shape:
            with torch.no_grad():
                leaf.data = transform_to(constraint).inv(value).to(leaf.dtype)
        del store[fullname]
    store._store(fullname, leaf, constraint)


def _local_param(name, value, leaf, constraint=constraints.real, event_dim=None):
    """A ``param`` site for a module-local param: handlers see it, the param store does not."""
    value.unconstrained = LeafRef(leaf)  # SVI's optimiser finds the leaf through the trace
    if not HANDLER_STACK:
        return value
    msg = new_message("param", name, None, value, args=(None, constraint))
    msg["kwargs"] = {"event_dim": event_dim}
    return apply_stack(msg)


def _pyro_params_of(module):
    for name, value in module._parameters.items():
        if name.endswith("_unconstrained") and isinstance(module, PyroModule):
            constrained = name[: -len("_unconstrained")]
            if constrained in module._pyro_params:
                yield constrained, getattr(module, constrained)
                continue
        yield name, value


def pyro_method(fn):
    """Decorate a PyroModule method other than ``forward`` so that it runs as the module does.

    Its PyroSample attributes are then sites (drawn once per call), as in ``forward``.
    """

    @functools.wraps(fn)
    def method(self, *args, **kwargs):
        with self._pyro_context:
            return fn(self, *args, **kwargs)

    return method


def clear(module):
    """Remove every param, sample and submodule of a PyroModule (and their entries in the param store)."""
    if not isinstance(module, PyroModule):
        raise TypeError(f"clear expects a PyroModule, got {type(module).__name__}")
    for names in (module._pyro_params, module._parameters, module._modules, module._pyro_samples):
        for name in list(names):
            delattr(module, name)


def to_pyro_module_(module, recurse=True):
    """Turn a torch module (and, with ``recurse``, its submodules) into PyroModules in place.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 3))
    >>> to_pyro_module_(net)
    >>> type(net).__name__, type(net[0]).__name__, net[0]._pyro_name
    ('PyroSequential', 'PyroLinear', '0')
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"to_pyro_module_ expects a torch.nn.Module, got {type(module).__name__}")
    if isinstance(module, PyroModule):
        if recurse:
            for name, value in list(module._modules.items()):
                to_pyro_module_(value)
                setattr(module, name, value)
        return
    module.__class__ = PyroModule[module.__class__]
    module._pyro_name = ""
    module._pyro_context = _Context()
    module._pyro_params = OrderedDict()
    module._pyro_samples = OrderedDict()
    for name, value in list(module._parameters.items()):
        setattr(module, name, value)
    for name, value in list(module._modules.items()):
        if recurse:
            to_pyro_module_(value)
        setattr(module, name, value)


__all__ = ["PyroModule", "PyroParam", "PyroSample", "clear", "pyro_method", "to_pyro_module_"]
