"""Inference: ELBO losses, SVI, and (later) autoguides, Importance, Predictive."""

from causalppl.infer.elbo import ELBO, NonFiniteLossError, Trace_ELBO
from causalppl.infer.svi import SVI

__all__ = ["ELBO", "NonFiniteLossError", "SVI", "Trace_ELBO"]
