"""causalppl: a causal inference workbench with a graph-first API.

Structural causal models are networkx DAGs of torch distributions; ``do`` and
``condition`` are graph surgery; models lower to stochastic functions run by
a small Pyro-style effect-handler runtime and fit with SVI.
"""

from causalppl import causal, datasets, distributions, graphs, handlers, infer, nn, ops, optim, settings
from causalppl import distributions as dist
from causalppl.bayesian_module import random_module
from causalppl.distributions import constraints
from causalppl.enumeration import markov
from causalppl.graph import SCM
from causalppl.graph.dot import read_dot
from causalppl.graph.formats import read_graph
from causalppl.graph.persist import load
from causalppl.handlers import condition, do, trace
from causalppl.infer.inspect import render_model
from causalppl.params import (
    ParamStore,
    clear_param_store,
    get_param_store,
    module,
    set_rng_seed,
)
from causalppl.runtime import (
    barrier,
    deterministic,
    enable_validation,
    factor,
    iarange,
    irange,
    param,
    plate,
    plate_stack,
    sample,
    subsample,
    validation_enabled,
)

poutine = handlers

__version__ = "0.1.0"

__all__ = [
    "ParamStore", "SCM", "causal", "datasets", "clear_param_store", "condition", "constraints", "deterministic", "dist",
    "distributions", "do", "factor", "get_param_store", "handlers", "infer",
    "module", "nn", "optim", "param", "plate", "poutine", "sample", "set_rng_seed", "trace",
]
__all__ += ["barrier", "iarange", "irange"]
__all__ += ["random_module", "render_model", "settings"]
__all__ += ["enable_validation", "graphs", "load", "markov", "ops", "plate_stack", "read_dot", "read_graph",
            "subsample", "validation_enabled"]
from causalppl import util  # noqa: E402  (Pyro's ``pyro.util.optional`` and friends)

__all__ += ["util"]
