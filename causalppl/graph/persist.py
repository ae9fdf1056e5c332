"""Saving an SCM to one file and loading it back: graph, mechanisms, parameters.

The file is a ``torch.save`` of plain data only (dicts, lists, strings,
numbers, tensors), read back with ``torch.load(..., weights_only=True)``, so
loading a file never runs code from it. Mechanisms are stored as
descriptions that are rebuilt from whitelists: an expression's text (parsed
again, never ``eval``-ed), a fixed distribution's family and tensor
arguments, a learnable mechanism's ``spec()`` (rebuilt by
:func:`causalppl.causal.learnable.mechanism_from_spec`). The file is written
atomically (temporary file, fsync, rename).

>>> import os, tempfile, causalppl as cp
>>> scm = cp.SCM().add("z", "Normal(0, 1)", latent=True).add("x", "Normal(2*z, 0.5)")
>>> path = os.path.join(tempfile.mkdtemp(), "model.cpm")
>>> scm.do(z=1.0).save(path)
>>> again = cp.load(path)
>>> again.nodes, again.latent, again.interventions
(('z', 'x'), frozenset({'z'}), {'z': tensor(1.)})
>>> again.mechanism("x").text
'Normal(2*z, 0.5)'
"""

from __future__ import annotations

import errno
import os

import torch

from causalppl import distributions as dist
from causalppl.graph.expr import Expression
from causalppl.graph.mechanism import FixedDistribution
from causalppl.params import atomic_torch_save, check_save_path

FORMAT = "causalppl.scm"
VERSION = 1


# -- saving ------------------------------------------------------------------------


def save(scm, path):
    """Write ``scm`` to ``path`` as one file, atomically; see the module docstring for what it holds.

    Raises
    ------
    ValueError
        naming the node, for a mechanism that cannot be saved (a Python
        callable, or a distribution outside the supported families).
    FileNotFoundError / IsADirectoryError
        when ``path``'s folder does not exist or ``path`` is a folder,
        before anything is written.

    >>> import os, tempfile, causalppl as cp
    >>> path = os.path.join(tempfile.mkdtemp(), "scale.cpm")
    >>> save(cp.graphs.load("scale"), path)
    >>> cp.load(path).inputs
    ('guess',)
    """
    check_save_path(path)
    atomic_torch_save(to_data(scm), path)


def to_data(scm):
    """The plain-data description of ``scm`` that :func:`save` writes.

    >>> import causalppl as cp
    >>> data = to_data(cp.SCM().add("x", "Normal(0, 1)"))
    >>> data["format"], data["version"], data["nodes"][0]["mechanism"]
    ('causalppl.scm', 1, {'type': 'expression', 'text': 'Normal(0, 1)'})
    """
    notes = []
    nodes = []
    for name, mechanism in scm._mechanisms.items():  # insertion order: the loaded SCM orders ties alike
        labels = getattr(mechanism.fn, "labels", None)
        if labels is not None and not _is_plain(labels):
            notes.append(f"node '{name}': labels of type {type(labels).__name__} were not saved (not plain data)")
            labels = None
        nodes.append({
            "name": name,
            "mechanism": _mechanism_spec(name, mechanism),
            "latent": name in scm._latent,
            "labels": _copy(labels),
        })
    state = scm._state
    return {
        "format": FORMAT,
        "version": VERSION,
        "nodes": nodes,
        "observed": _copy(scm.observed),
        "interventions": _copy(scm.interventions),
        "replaced": {name: _mechanism_spec(name, found.mechanism) for name, found in scm.replaced.items()},
        "soft": {name: _soft_spec(name, found) for name, found in scm._soft.items()},
        "param_store": state.params.get_state(),
        "posterior": _copy(state.posterior),
        "fit": _plain_part(state.fit, "fit", notes),
        "notes": notes,
    }


def _mechanism_spec(node, mechanism):
    fn = mechanism.fn
    if isinstance(fn, Expression):
        return {"type": "expression", "text": fn.text}
    if isinstance(fn, FixedDistribution):
        return _distribution_spec(node, fn.distribution)
    spec = _learnable_spec(node, fn)
    if spec is not None:
        return {"type": "learnable", "spec": spec}
    raise ValueError(
        f"node '{node}': its mechanism {fn!r} is a Python callable, which cannot be saved; "
        "use an expression string (like \"Normal(2*x + 1, 0.5)\") or a learnable mechanism "
        "(causalppl.causal.learn) instead"
    )


def _soft_spec(node, intervention):
    """A shift or stochastic intervention as plain data: its expression text, or a fixed distribution."""
    if intervention.kind == "stochastic" and not intervention.parents and not isinstance(intervention.law, Expression):
        return {"kind": "stochastic", "law": _distribution_spec(node, intervention.law)}
    if intervention.text is None:
        raise ValueError(f"node '{node}': its {intervention.kind} intervention is a Python callable, which cannot "
                         f"be saved; write it as an expression (such as do({node}=\"{node} + 1\"))")
    return {"kind": intervention.kind, "text": intervention.text}


def _learnable_spec(node, fn):
    """The plain-data ``fn.spec()`` of a learnable mechanism (causalppl.causal.learnable); None for others."""
    if not callable(getattr(fn, "spec", None)):
        return None
    spec = fn.spec()
    if not (isinstance(spec, dict) and isinstance(spec.get("kind"), str) and _is_plain(spec)):
        raise ValueError(f"node '{node}': its mechanism's spec() must return a plain dict with a 'kind', "
                         f"got {spec!r}")
    return _copy(spec)


def _distribution_spec(node, distribution):
    family = type(distribution).__name__
    # cp.dist classes subclass torch's: either one saves (nothing subclassing them further).
    saved = _FAMILIES[family][0] if family in _FAMILIES else None
    if saved is None or type(distribution) not in (saved, *saved.__bases__):
        known = ", ".join(_FAMILIES)
        raise ValueError(
            f"node '{node}': a fixed {family} distribution cannot be saved (saved families: {known}); "
            "use an expression string instead"
        )
    if family in ("Bernoulli", "Categorical"):
        # torch computes the other one lazily; save the one it was built from.
        names = ("logits",) if distribution._param is vars(distribution).get("logits") else ("probs",)
    else:
        names = _FAMILIES[family][1][0]
    args = {name: getattr(distribution, name).detach().clone() for name in names}
    if family == "Delta":
        args["event_dim"] = len(distribution.event_shape)
    return {"type": "distribution", "family": family, "args": args}


# -- loading -----------------------------------------------------------------------


def load(path, map_location=None):
    """The SCM saved at ``path`` by :func:`save` (``map_location`` as in ``torch.load``).

    Raises
    ------
    FileNotFoundError
        if there is no file at ``path``.
    ValueError
        naming ``path``, for a file that is not a causalppl SCM file (garbage,
        a param store, anything ``torch.load(weights_only=True)`` refuses), one
        of an unknown version, or one whose contents do not describe a valid SCM.

    >>> import os, tempfile, causalppl as cp
    >>> path = os.path.join(tempfile.mkdtemp(), "garbage.cpm")
    >>> _ = open(path, "wb").write(b"garbage")
    >>> load(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: .../garbage.cpm: not a causalppl SCM file (torch.load failed: ...)
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "a folder, not a causalppl SCM file", path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as err:
        # torch raises EOFError, RuntimeError or UnpicklingError (for anything that
        # is not plain data) depending on what is wrong with the bytes.
        raise ValueError(f"{path}: not a causalppl SCM file (torch.load failed: {type(err).__name__})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        hint = ""
        if isinstance(data, dict) and "params" in data and "constraints" in data:
            hint = " (it is a param store: load it with cp.get_param_store().load(path))"
        raise ValueError(f"{path}: not a causalppl SCM file{hint}")
    if data.get("version") != VERSION:
        raise ValueError(f"{path}: causalppl SCM file version {data.get('version')!r} is not supported "
                         f"(this causalppl reads version {VERSION})")
    try:
        return from_data(data)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ValueError(f"{path}: not a valid causalppl SCM file: {message}") from err


def from_data(data):
    """Rebuild an SCM from the plain data of :func:`to_data` (mechanisms from whitelists only).

    >>> import causalppl as cp
    >>> from_data(to_data(cp.graphs.load("confounded"))).nodes
    ('z', 'x', 'y')
    """
    from causalppl.graph.scm import SCM

    scm = SCM()
    labels = {}
    for entry in _field(data, "nodes", list):
        name = _field(entry, "name", str, "a node entry")
        where = f"node '{name}'"
        scm.add(name, _build_mechanism(where, _field(entry, "mechanism", dict, where)),
                latent=_field(entry, "latent", bool, where))
        if entry.get("labels") is not None:
            labels[name] = entry["labels"]
    for name, value in labels.items():
        fn = scm.mechanism(name).fn
        if getattr(fn, "labels", None) is None:
            fn.labels = value
    interventions = _tensors(_field(data, "interventions", dict), "interventions")
    observed = _tensors(_field(data, "observed", dict), "observed")
    replaced = {name: _build_mechanism(f"node '{name}'", spec)
                for name, spec in _field(data, "replaced", dict, default={}).items()}
    if replaced:
        scm = scm.replace(**replaced)
    soft = {name: _build_soft(f"node '{name}'", spec) for name, spec in _field(data, "soft", dict, default={}).items()}
    if soft:
        scm = scm.do(**soft)
    if interventions:
        scm = scm.do(**interventions)
    if observed:
        scm = scm.condition(**observed)
    state = scm._state  # shared by the SCMs do/condition made above
    state.params.set_state(_field(data, "param_store", dict), where="param_store")
    if data.get("posterior") is not None:
        state.posterior = _tensors(_field(data, "posterior", dict), "posterior")
    state.fit = data.get("fit")
    return scm


def _build_soft(where, spec):
    kind = _field(spec, "kind", str, f"{where}: the intervention")
    if kind == "stochastic" and "law" in spec:
        return _build_distribution(where, _field(spec, "law", dict, where))
    if kind not in ("shift", "stochastic"):
        raise ValueError(f"{where}: unknown intervention kind {kind!r} (expected shift or stochastic)")
    return _field(spec, "text", str, where)  # SCM.do parses it (never eval)


def _build_mechanism(where, spec):
    kind = _field(spec, "type", str, f"{where}: the mechanism")
    if kind == "expression":
        return _field(spec, "text", str, where)  # SCM.add parses it (never eval)
    if kind == "distribution":
        return _build_distribution(where, spec)
    if kind == "learnable":
        from causalppl.causal.learnable import mechanism_from_spec  # graph/ must not import causal/ eagerly

        return mechanism_from_spec(_field(spec, "spec", dict, where))  # from its whitelist of kinds
    raise ValueError(f"{where}: unknown mechanism type {kind!r} (expected expression, distribution or learnable)")


def _build_distribution(where, spec):
    family = _field(spec, "family", str, where)
    if family not in _FAMILIES:
        raise ValueError(f"{where}: unknown distribution family {family!r} (known: {', '.join(_FAMILIES)})")
    cls, arg_sets = _FAMILIES[family]
    args = dict(_field(spec, "args", dict, where))
    options = {}
    if family == "Delta" and "event_dim" in args:
        options["event_dim"] = args.pop("event_dim")
        if type(options["event_dim"]) is not int:
            raise ValueError(f"{where}: Delta event_dim must be an int, got {options['event_dim']!r}")
    if set(args) not in [set(names) for names in arg_sets]:
        expected = " or ".join(str(list(names)) for names in arg_sets)
        raise ValueError(f"{where}: {family} needs the arguments {expected}, got {sorted(args)}")
    _tensors(args, f"{where}: {family} arguments")
    return cls(**args, **options)


# -- plain data ------------------------------------------------------------------------

# family -> (class, the argument sets it is saved and rebuilt with)
_FAMILIES = {
    "Normal": (dist.Normal, [("loc", "scale")]),
    "LogNormal": (dist.LogNormal, [("loc", "scale")]),
    "Laplace": (dist.Laplace, [("loc", "scale")]),
    "StudentT": (dist.StudentT, [("df", "loc", "scale")]),
    "Uniform": (dist.Uniform, [("low", "high")]),
    "Exponential": (dist.Exponential, [("rate",)]),
    "Gamma": (dist.Gamma, [("concentration", "rate")]),
    "Beta": (dist.Beta, [("concentration1", "concentration0")]),
    "Poisson": (dist.Poisson, [("rate",)]),
    "Bernoulli": (dist.Bernoulli, [("probs",), ("logits",)]),
    "Categorical": (dist.Categorical, [("probs",), ("logits",)]),
    "Delta": (dist.Delta, [("v", "log_density")]),
}

_SCALARS = (type(None), bool, int, float, str)


def _is_plain(value):
    """Whether ``value`` is made only of dicts, lists, tuples, strings, numbers, None and tensors."""
    if isinstance(value, _SCALARS) or type(value) is torch.Tensor:
        return True
    if isinstance(value, torch.Tensor):  # a Parameter or other subclass: plain once detached
        return True
    if type(value) in (list, tuple):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):  # Samples (a dict subclass) too: _copy makes a plain dict of it
        return all(isinstance(key, _SCALARS) and _is_plain(item) for key, item in value.items())
    return False


def _copy(value):
    """A copy of plain ``value`` with every tensor detached and cloned (tuples become lists)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return [_copy(item) for item in value]
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    return value


def _plain_part(value, where, notes):
    """The plain-data part of a (nested) dict; what is left out is described in ``notes``."""
    if value is None or _is_plain(value):
        return _copy(value)
    if not isinstance(value, dict):
        notes.append(f"{where} ({type(value).__name__}) was not saved: not plain data")
        return None
    kept = {}
    for key, item in value.items():
        part = _plain_part(item, f"{where}[{key!r}]", notes) if isinstance(key, _SCALARS) else None
        if part is not None or item is None:
            kept[key] = part
    return kept


_REQUIRED = object()


def _field(mapping, key, kind, where="the file", default=_REQUIRED):
    if not isinstance(mapping, dict):
        raise ValueError(f"{where}: expected a dict, got {type(mapping).__name__}")
    if key not in mapping:
        if default is not _REQUIRED:
            return default
        raise ValueError(f"{where}: '{key}' is missing")
    value = mapping[key]
    if not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise ValueError(f"{where}: '{key}' should be a {expected}, got {type(value).__name__}")
    return value


def _tensors(mapping, where):
    for key, value in mapping.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"{where}: expected name -> tensor, got {key!r} -> {type(value).__name__}")
    return mapping
