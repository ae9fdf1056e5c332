"""Inference: ELBO losses (with enumeration), SVI, automatic guides, importance sampling, predictive
sampling, MCMC (NUTS, HMC)."""

import sys as _sys

from causalppl.enumeration import config_enumerate
from causalppl.infer import autoguide, autoguide_utils, diagnostics, initialization, inspect, mcmc, reparam
from causalppl.infer.abstract_infer import TracePosterior
from causalppl.infer.csis import CSIS
from causalppl.infer.discrete import infer_discrete
from causalppl.infer.elbo import ELBO, NonFiniteLossError, Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from causalppl.infer.energy_distance import EnergyDistance
from causalppl.infer.importance import Importance
from causalppl.infer.jit import JitTrace_ELBO, JitTraceGraph_ELBO, JitTraceMeanField_ELBO
from causalppl.infer.marginal import EmpiricalMarginal
from causalppl.infer.mcmc import HMC, MCMC, NUTS
from causalppl.infer.predictive import Predictive
from causalppl.infer.renyi_elbo import RenyiELBO
from causalppl.infer.svgd import SVGD, IMQSteinKernel, RBFSteinKernel
from causalppl.infer.svi import SVI
from causalppl.infer.trace_tail_adaptive_elbo import TraceTailAdaptive_ELBO
from causalppl.infer.traceenum import JitTraceEnum_ELBO, TraceEnum_ELBO
from causalppl.infer.tracetmc_elbo import TraceTMC_ELBO
from causalppl.infer.weighed import MHResampler, WeighedPredictive
from causalppl.runtime import enable_validation, is_validation_enabled

# Pyro's module paths under ``autoguide`` (a module here, not a package): pyro.infer.autoguide.initialization
# and .utils import as causalppl.infer.autoguide.initialization / .utils.
if not hasattr(autoguide, "__path__"):
    _sys.modules.setdefault("causalppl.infer.autoguide.initialization", initialization)
    _sys.modules.setdefault("causalppl.infer.autoguide.utils", autoguide_utils)

__all__ = [
    "ELBO", "HMC", "Importance", "MCMC", "NUTS", "NonFiniteLossError", "Predictive", "SVI", "TraceMeanField_ELBO",
    "TraceGraph_ELBO", "Trace_ELBO", "autoguide", "diagnostics", "inspect", "mcmc", "reparam",
    "JitTrace_ELBO", "JitTraceGraph_ELBO", "JitTraceMeanField_ELBO", "enable_validation", "is_validation_enabled",
    "JitTraceEnum_ELBO", "TraceEnum_ELBO", "config_enumerate", "infer_discrete", "EmpiricalMarginal",
    "EnergyDistance", "TraceTailAdaptive_ELBO", "TraceTMC_ELBO",
    "MHResampler", "WeighedPredictive", "SVGD", "IMQSteinKernel", "RBFSteinKernel",
    "RenyiELBO", "CSIS", "TracePosterior",
]
