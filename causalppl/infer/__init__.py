"""Inference: ELBO losses, SVI, automatic guides, importance sampling, predictive sampling."""

from causalppl.infer import autoguide, inspect, reparam
from causalppl.infer.elbo import ELBO, NonFiniteLossError, Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from causalppl.infer.importance import Importance
from causalppl.infer.predictive import Predictive
from causalppl.infer.svi import SVI

__all__ = [
    "ELBO", "Importance", "NonFiniteLossError", "Predictive", "SVI", "TraceMeanField_ELBO",
    "TraceGraph_ELBO", "Trace_ELBO", "autoguide", "inspect", "reparam",
]
