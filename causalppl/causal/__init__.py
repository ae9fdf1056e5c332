"""Causal queries and identification over structural causal models."""
