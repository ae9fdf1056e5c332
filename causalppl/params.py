"""The global param store: named learnable tensors with constraints.

Each parameter is kept as an *unconstrained* leaf tensor (what optimisers
update) together with its constraint; reading it returns
``transform_to(constraint)(leaf)``, so a ``positive`` parameter stays positive
whatever step the optimiser takes.

>>> import torch, causalppl as cp
>>> cp.clear_param_store()
>>> scale = cp.param("scale", torch.tensor(0.5), constraint=cp.constraints.positive)
>>> scale.unconstrained()
tensor(-0.6931, requires_grad=True)
>>> sorted(cp.get_param_store().keys())
['scale']
"""

from __future__ import annotations

import os
import random
import tempfile
import weakref

import torch
from torch.distributions import constraints, transform_to


class LeafRef(weakref.ref):
    """The weak reference ``value.unconstrained`` is: calling it gives the leaf.

    It pickles (as a reference to nothing), so tensors that carry one, such
    as an ``nn.Module``'s parameters kept in the store, can still be saved
    with ``torch.save``.
    """

    __slots__ = ()

    def __reduce__(self):
        return _dead_ref, ()


def _dead_ref():
    return _DEAD


def _DEAD():
    return None


_STORES = weakref.WeakSet()  # every ParamStore alive: see store_holding


class ParamStore:
    """Name -> (unconstrained leaf, constraint). Use :func:`get_param_store`."""

    def __init__(self):
        _STORES.add(self)
        self._leaves: dict[str, torch.Tensor] = {}
        self._constraints: dict[str, constraints.Constraint] = {}
        self._transforms: dict[str, torch.distributions.Transform] = {}

    # -- reading and creating ------------------------------------------------

    def get_param(self, name, init=None, constraint=constraints.real):
        """The constrained value of ``name``, created from ``init`` on first use."""
        leaf = self._leaves.get(name)
        if leaf is None:
            if init is None:
                known = ", ".join(sorted(self._leaves)) or "none"
                raise KeyError(
                    f"param '{name}' is not in the param store and no init value was given "
                    f"(known params: {known})"
                )
            self._create(name, init, constraint)
            leaf = self._leaves[name]
        return self._constrained(name, leaf)

    def _create(self, name, init, constraint):
        if callable(init) and not isinstance(init, torch.Tensor):
            init = init()
        if not isinstance(init, torch.Tensor):
            init = torch.as_tensor(init, dtype=torch.get_default_dtype())
        if not isinstance(constraint, constraints.Constraint):
            raise TypeError(f"param '{name}': constraint must be a torch Constraint, got {constraint!r}")
        if isinstance(init, torch.nn.Parameter) and constraint is constraints.real:
            leaf = init  # an nn.Module's own parameter: share it, don't copy it
        else:
            leaf = transform_to(constraint).inv(init.detach()).clone().requires_grad_(True)
            # As in Pyro, an init outside the constraint is mapped into it through the transform (an unnormalised
            # simplex row, say); only one the transform cannot invert is an error.
            if not bool(constraint.check(init.detach()).all()) and not bool(torch.isfinite(leaf).all()):
                raise ValueError(f"param '{name}': init value {init} does not satisfy constraint {constraint}")
        self._store(name, leaf, constraint)

    def _store(self, name, leaf, constraint):
        self._leaves[name] = leaf
        self._constraints[name] = constraint
        if constraint is constraints.real:
            # The constrained value is the leaf itself: no transform on every read.
            self._transforms[name] = None
            leaf.unconstrained = LeafRef(leaf)
        else:
            self._transforms[name] = simplify_transform(transform_to(constraint))

    def _constrained(self, name, leaf):
        transform = self._transforms[name]
        if transform is None:
            return leaf
        value = transform(leaf)
        # A weak reference is callable: ``value.unconstrained()`` gives the leaf.
        value.unconstrained = LeafRef(leaf)
        return value

    def __getitem__(self, name):
        if name not in self._leaves:
            return self.get_param(name)  # raises the KeyError that lists known names
        return self._constrained(name, self._leaves[name])

    def __setitem__(self, name, value):
        """Set the constrained value of ``name`` (keeping its constraint, real if new)."""
        constraint = self._constraints.get(name, constraints.real)
        self._leaves.pop(name, None)
        self._create(name, value, constraint)

    def __delitem__(self, name):
        del self._leaves[name], self._constraints[name], self._transforms[name]

    def __contains__(self, name):
        return name in self._leaves

    @property
    def _params(self):
        """Name -> unconstrained leaf (Pyro's attribute; the dict itself, do not modify it)."""
        return self._leaves

    @property
    def _param_to_name(self):
        """Unconstrained leaf -> name (Pyro's attribute)."""
        return {leaf: name for name, leaf in self._leaves.items()}

    def __len__(self):
        return len(self._leaves)

    def __iter__(self):
        return iter(list(self._leaves))

    def keys(self):
        return list(self._leaves)

    def values(self):
        return [self[name] for name in self._leaves]

    def items(self):
        """(name, constrained value) pairs, in creation order."""
        return [(name, self[name]) for name in self._leaves]

    def named_parameters(self):
        """(name, unconstrained leaf) pairs: what an optimiser should update."""
        return list(self._leaves.items())

    def leaf(self, name):
        """The unconstrained leaf tensor of ``name``."""
        return self._leaves[name]

    def get_constraint(self, name):
        return self._constraints[name]

    def get_all_param_names(self):
        return list(self._leaves)

    def setdefault(self, name, init, constraint=constraints.real):
        """The constrained value of ``name``, created from ``init`` if it is new."""
        return self.get_param(name, init, constraint)

    def replace_param(self, name, new_value, old_value):
        """Set ``name`` to ``new_value`` only if it still holds ``old_value`` (Pyro's check)."""
        held = getattr(old_value, "unconstrained", None)
        if (old_value if held is None else held()) is not self._leaves.get(name):
            raise ValueError(f"param '{name}': the value to replace is not the one the store holds")
        self[name] = new_value

    def clear(self):
        self._leaves.clear()
        self._constraints.clear()
        self._transforms.clear()

    # -- saving and loading --------------------------------------------------

    def get_state(self):
        """A plain dict of tensors and constraint descriptions (safe to torch.save)."""
        return {
            "params": {name: leaf.detach().clone() for name, leaf in self._leaves.items()},
            "constraints": {name: encode_constraint(name, c) for name, c in self._constraints.items()},
        }

    def set_state(self, state, where="param store state"):
        """Set the params in ``state`` (from :meth:`get_state`), replacing those with the same names.

        All or nothing: every entry is checked first, so a bad one raises
        ``ValueError`` (prefixed by ``where``, naming the entry) and leaves
        the store as it was.
        """
        entries = decode_state(state, where)
        for name, leaf, constraint in entries:
            self._store(name, leaf, constraint)

    def save(self, path):
        """Write the store to ``path`` atomically (see :func:`atomic_torch_save`)."""
        atomic_torch_save(self.get_state(), path)

    def load(self, path, map_location=None):
        """Load params saved by :meth:`save`, replacing those with the same names.

        All or nothing: a file that is not a param store, or has one bad
        entry, raises ``ValueError`` naming ``path`` and leaves every param
        as it was.
        """
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except OSError:
            raise
        except Exception as err:
            # torch raises EOFError, KeyError, RuntimeError or UnpicklingError
            # (suggesting weights_only=False) depending on how the bytes are wrong.
            raise ValueError(
                f"{path}: not a causalppl param store file (torch.load failed: {type(err).__name__})"
            ) from err
        if isinstance(state, dict) and "format" in state and "param_store" in state:
            raise ValueError(f"{path}: this is a saved SCM, not a param store file; load it with cp.load(path)")
        where = os.fspath(path) if isinstance(path, (str, bytes, os.PathLike)) else repr(path)
        self.set_state(state, where=where)


def simplify_transform(transform):
    """``transform`` without trailing identity steps: ``transform_to(positive)`` is exp followed by
    the affine map ``0 + 1 * x``, which changes no number but costs two ops (and their gradients)
    at every read of every positive param.

    >>> simplify_transform(transform_to(constraints.positive))
    ExpTransform()
    """
    parts = list(getattr(transform, "parts", ()))
    if not parts:
        return transform
    while len(parts) > 1 and _is_identity_affine(parts[-1]):
        parts.pop()
    return parts[0] if len(parts) == 1 else transform


def _is_identity_affine(transform):
    if not isinstance(transform, torch.distributions.transforms.AffineTransform):
        return False
    return all(isinstance(v, (int, float)) and v == want for v, want in ((transform.loc, 0), (transform.scale, 1)))


class FlatParams:
    """Params of one or more stores packed into one flat leaf tensor, ``flat``.

    While packed, each packed param's leaf in its store is a view into
    ``flat``: the store always shows the current values, and one optimiser
    update of ``flat`` (one tensor, not one per param) updates them all.
    :meth:`unpack` gives every param its own leaf again. ``entries`` is a list
    of ``(store, name)``; all must share a dtype and device.

    >>> store = ParamStore()
    >>> store["a"], store["b"] = torch.tensor([1.0, 2.0]), torch.tensor(3.0)
    >>> packed = FlatParams([(store, "a"), (store, "b")])
    >>> with torch.no_grad():
    ...     _ = packed.flat.mul_(10)
    >>> store["b"], packed.span(store, "a")
    (tensor(30., requires_grad=True), (0, 2))
    >>> packed.unpack(); store.leaf("b")._base is None
    True
    """

    def __init__(self, entries):
        leaves = [store.leaf(name) for store, name in entries]
        kinds = {(leaf.dtype, leaf.device) for leaf in leaves}
        if len(kinds) > 1:
            raise ValueError(f"FlatParams: params of several dtypes or devices {sorted(map(str, kinds))}")
        shared = [name for (_, name), leaf in zip(entries, leaves, strict=True) if isinstance(leaf, torch.nn.Parameter)]
        if shared:
            raise ValueError(f"FlatParams: param '{shared[0]}' is an nn.Module's own parameter")
        self.entries = list(entries)
        self.flat = torch.cat([leaf.detach().reshape(-1) for leaf in leaves]).requires_grad_(True)
        self._spans = {}
        base, offset = self.flat.detach(), 0
        for (store, name), leaf in zip(entries, leaves, strict=True):
            size = leaf.numel()
            self._spans[(id(store), name)] = (offset, offset + size)
            store._store(name, base[offset:offset + size].view(leaf.shape).requires_grad_(True),
                         store.get_constraint(name))
            offset += size

    def span(self, store, name):
        """``(start, stop)`` of param ``name`` of ``store`` in ``flat``."""
        return self._spans[(id(store), name)]

    def unpack(self):
        """Give each packed param a leaf of its own again (with its current value)."""
        for store, name in self.entries:
            if name in store:
                leaf = store.leaf(name)
                if leaf._base is not None:
                    store._store(name, leaf.detach().clone().requires_grad_(True), store.get_constraint(name))


def decode_state(state, where):
    """The ``(name, unconstrained leaf, constraint)`` entries of a saved state, every one checked.

    Raises ``ValueError`` starting with ``where`` (a file's path) for
    anything that is not a state :meth:`ParamStore.get_state` writes.
    """
    if not isinstance(state, dict) or not isinstance(state.get("params"), dict):
        raise ValueError(f"{where}: not a causalppl param store file (expected a dict with a 'params' dict)")
    codes = state.get("constraints", {})
    if not isinstance(codes, dict):
        raise ValueError(f"{where}: 'constraints' must be a dict of param name -> constraint, "
                         f"got {type(codes).__name__}")
    entries = []
    for name, leaf in state["params"].items():
        if not isinstance(name, str):
            raise ValueError(f"{where}: param name {name!r} is not a string")
        if not isinstance(leaf, torch.Tensor) or not leaf.is_floating_point():
            shown = f"tensor of dtype {leaf.dtype}" if isinstance(leaf, torch.Tensor) else type(leaf).__name__
            raise ValueError(f"{where}: param '{name}' must be a floating-point tensor, got {shown}")
        code = codes.get(name, ["real"])
        try:
            constraint = decode_constraint(name, code)
        except ValueError as err:  # names the param already
            raise ValueError(f"{where}: {err}") from None
        except Exception as err:  # torch refusing the bounds, say
            raise ValueError(f"{where}: param '{name}': bad constraint {code!r} ({err})") from None
        entries.append((name, leaf.detach().clone().requires_grad_(True), constraint))
    return entries


def check_save_path(path):
    """Raise a clear error if ``path`` cannot be saved to: its folder is missing, or it is a folder.

    Called before anything is written (and before a long fit whose result goes there).

    >>> check_save_path("no-such-folder/model.cpm")
    Traceback (most recent call last):
    ...
    FileNotFoundError: cannot save to no-such-folder/model.cpm: the folder no-such-folder does not exist
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save to {path}: it is a folder; give a file name")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist")


def atomic_torch_save(obj, path):
    """``torch.save(obj)`` to ``path`` so that a crash never leaves a half-written file.

    Writes a temporary file in the same folder, fsyncs it, then renames it
    over ``path`` (``os.replace`` is atomic); on any error the temporary file
    is removed and an existing ``path`` is left as it was.

    >>> import os, tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "x.pt")
    >>> atomic_torch_save({"x": torch.ones(2)}, path)
    >>> torch.load(path, weights_only=True)
    {'x': tensor([1., 1.])}
    """
    check_save_path(path)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    handle, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


# Constraints are stored as short lists ("positive", ["interval", 0.0, 1.0]) so
# that loading never unpickles arbitrary objects.
_NAMED_CONSTRAINTS = {
    name: value
    for name, value in vars(constraints).items()
    if isinstance(value, constraints.Constraint) and not name.startswith("_")
}
_PARAMETRISED = {
    constraints.greater_than: ("greater_than", ("lower_bound",)),
    constraints.greater_than_eq: ("greater_than_eq", ("lower_bound",)),
    constraints.less_than: ("less_than", ("upper_bound",)),
    constraints.interval: ("interval", ("lower_bound", "upper_bound")),
    constraints.half_open_interval: ("half_open_interval", ("lower_bound", "upper_bound")),
}


def encode_constraint(name, constraint):
    for key, value in _NAMED_CONSTRAINTS.items():
        if constraint is value:
            return [key]
    for cls, (key, fields) in _PARAMETRISED.items():
        if type(constraint) is cls:
            return [key] + [float(getattr(constraint, field)) for field in fields]
    if isinstance(constraint, constraints.independent):
        return ["independent", encode_constraint(name, constraint.base_constraint),
                constraint.reinterpreted_batch_ndims]
    raise ValueError(f"param '{name}': cannot save constraint {constraint!r}")


def decode_constraint(name, code):
    if not isinstance(code, (list, tuple)) or not code or not isinstance(code[0], str):
        raise ValueError(f"param '{name}': a saved constraint is a list such as ['positive'], got {code!r}")
    key, *args = code
    if key == "independent":
        if len(args) != 2 or not isinstance(args[1], int) or isinstance(args[1], bool) or args[1] < 0:
            raise ValueError(f"param '{name}': expected ['independent', constraint, dims], got {code!r}")
        return constraints.independent(decode_constraint(name, args[0]), args[1])
    for cls, (known, fields) in _PARAMETRISED.items():
        if key == known:
            if len(args) != len(fields) or not all(_is_number(arg) for arg in args):
                raise ValueError(f"param '{name}': constraint {key!r} needs {len(fields)} number(s) "
                                 f"({', '.join(fields)}), got {args!r}")
            return cls(*args)
    if key in _NAMED_CONSTRAINTS:
        return _NAMED_CONSTRAINTS[key]
    raise ValueError(f"param '{name}': unknown constraint {key!r} in saved file")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def store_holding(name, leaf):
    """The live param store that holds ``leaf`` under ``name`` (the global one or a scope's), or None."""
    for store in list(_STORES):
        if store._leaves.get(name) is leaf:
            return store
    return None


_PARAM_STORE = ParamStore()
# The stores of the active ``param_scope`` handlers, innermost last. The
# global store is the default scope (Pyro-style scripts never leave it).
_SCOPES: list[ParamStore] = []


def get_param_store():
    """The param store ``param`` sites read now: the innermost active
    :class:`causalppl.handlers.param_scope`, else the global store."""
    return _SCOPES[-1] if _SCOPES else _PARAM_STORE


def clear_param_store():
    """Remove every parameter from the global store."""
    _PARAM_STORE.clear()


def set_rng_seed(seed):
    """Seed torch (CPU and CUDA), Python's ``random`` and NumPy when present."""
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed)


_MODULE_NAMESPACE_DIVIDER = "$$$"


def param_with_module_name(pyro_name, param_name):
    """The store name of ``nn.Module`` param ``param_name`` registered as module ``pyro_name``.

    >>> param_with_module_name("net", "fc.weight")
    'net$$$fc.weight'
    """
    return _MODULE_NAMESPACE_DIVIDER.join([pyro_name, param_name])


def module_from_param_with_module_name(param_name):
    """The module part of a store name made by :func:`param_with_module_name`."""
    return param_name.split(_MODULE_NAMESPACE_DIVIDER)[0]


def user_param_name(param_name):
    """The module's own name of a param (``'fc.weight'`` for ``'net$$$fc.weight'``); other names unchanged.

    >>> user_param_name("net$$$fc.weight"), user_param_name("scale")
    ('fc.weight', 'scale')
    """
    if _MODULE_NAMESPACE_DIVIDER in param_name:
        return param_name.split(_MODULE_NAMESPACE_DIVIDER)[1]
    return param_name


def module(name, nn_module, update_module_params=None):
    """Register the parameters of ``nn_module`` in the param store as ``name$$$<param>`` (Pyro's names).

    Returns the module; inside SVI its parameters are optimised with the
    rest. A parameter with ``requires_grad=False`` is not registered (with a
    warning while the module is in training mode). When the store already
    holds a parameter of that name (loaded from disk, say):

    - ``update_module_params=True`` (Pyro): the module's parameter is
      replaced by the store's tensor;
    - ``update_module_params=False`` (Pyro's default): the module keeps its
      own tensor, and the store keeps its own;
    - ``None`` (the default here): the store's value is copied into the
      module's own tensor, which becomes the store's leaf, so the module and
      the store never disagree.

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> net = cp.module("net", torch.nn.Linear(2, 1))
    >>> sorted(cp.get_param_store().keys())
    ['net$$$bias', 'net$$$weight']
    """
    import warnings

    from causalppl.runtime import param

    if not hasattr(nn_module, "named_parameters") or isinstance(nn_module, type):
        raise TypeError(f"module '{name}': expected a torch.nn.Module instance, got {nn_module!r}")
    if _MODULE_NAMESPACE_DIVIDER in name:
        raise ValueError(f"module '{name}': improper module name, since it contains {_MODULE_NAMESPACE_DIVIDER}")
    store = get_param_store()
    replaced = {}
    for param_name, value in nn_module.named_parameters():
        if not value.requires_grad:
            if nn_module.training:
                warnings.warn(f"module '{name}': {param_name} was not registered in the param store because "
                              "requires_grad=False. You can silence this warning by calling my_module.train(False)",
                              UserWarning, stacklevel=2)
            continue
        full_name = param_with_module_name(name, param_name)
        if update_module_params is None and full_name in store and store.leaf(full_name) is not value:
            # Keep the store's value, but let the module's own tensor be the leaf.
            with torch.no_grad():
                value.copy_(store.leaf(full_name))
            del store[full_name]
        returned = param(full_name, value)
        if returned is not value:
            replaced[param_name] = returned
    if update_module_params and replaced:
        for param_name, value in replaced.items():
            owner_name, _, attribute = param_name.rpartition(".")
            owner = nn_module.get_submodule(owner_name) if owner_name else nn_module
            owner._parameters[attribute] = value
    return nn_module
