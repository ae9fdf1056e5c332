"""Inference: ELBO losses, SVI, automatic guides, importance sampling, predictive sampling, enumeration."""

from causalppl.enumeration import config_enumerate
from causalppl.infer import autoguide
from causalppl.infer.discrete import infer_discrete
from causalppl.infer.elbo import ELBO, NonFiniteLossError, Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from causalppl.infer.importance import Importance
from causalppl.infer.predictive import Predictive
from causalppl.infer.svi import SVI
from causalppl.infer.traceenum import JitTraceEnum_ELBO, TraceEnum_ELBO

__all__ = [
    "ELBO", "Importance", "JitTraceEnum_ELBO", "NonFiniteLossError", "Predictive", "SVI", "TraceEnum_ELBO",
    "TraceMeanField_ELBO", "TraceGraph_ELBO", "Trace_ELBO", "autoguide", "config_enumerate", "infer_discrete",
]
