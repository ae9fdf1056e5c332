"""Graph-first structural causal models."""
