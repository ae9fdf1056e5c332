"""Pyro's ``pyro.poutine.<x>_messenger`` module paths, over causalppl's handlers.

Pyro keeps each handler class in a module of its own (``from
pyro.poutine.trace_messenger import TraceMessenger``); causalppl keeps its
handlers in :mod:`causalppl.handlers`. :func:`register` makes those module
paths importable, each holding Pyro's class name for our handler, so scripts
written against Pyro's layout run unchanged.

>>> from causalppl.handlers.condition_messenger import ConditionMessenger
>>> import causalppl as cp
>>> ConditionMessenger is cp.handlers.condition
True
"""

from __future__ import annotations

import sys
import types

# module under causalppl.handlers -> {Pyro's name: name in causalppl.handlers}
PYRO_MODULES = {
    "trace_messenger": {"TraceMessenger": "trace"},
    "condition_messenger": {"ConditionMessenger": "condition"},
    "block_messenger": {"BlockMessenger": "block"},
    "replay_messenger": {"ReplayMessenger": "replay"},
    "scale_messenger": {"ScaleMessenger": "scale"},
    "mask_messenger": {"MaskMessenger": "mask"},
    "do_messenger": {"DoMessenger": "do"},
    "seed_messenger": {"SeedMessenger": "seed"},
    "substitute_messenger": {"SubstituteMessenger": "substitute"},
    "uncondition_messenger": {"UnconditionMessenger": "uncondition"},
    "lift_messenger": {"LiftMessenger": "lift"},
    "escape_messenger": {"EscapeMessenger": "escape"},
    "infer_config_messenger": {"InferConfigMessenger": "infer_config"},
    "reparam_messenger": {"ReparamMessenger": "reparam"},
    "enum_messenger": {"EnumMessenger": "EnumMessenger"},
    "markov_messenger": {"MarkovMessenger": "MarkovMessenger"},
    "broadcast_messenger": {"BroadcastMessenger": "broadcast"},
    "trace_struct": {"Trace": "Trace"},
}


def register(package):
    """Install ``package.<module>`` for every entry of :data:`PYRO_MODULES` (and ``messenger``)."""
    for module_name, names in PYRO_MODULES.items():
        full_name = f"{package.__name__}.{module_name}"
        module = types.ModuleType(full_name, f"Pyro's ``poutine.{module_name}`` path: {', '.join(names)}.")
        for pyro_name, ours in names.items():
            setattr(module, pyro_name, getattr(package, ours))
        module.__all__ = list(names)
        sys.modules[full_name] = module
        setattr(package, module_name, module)
    sys.modules[f"{package.__name__}.messenger"] = package.messenger
