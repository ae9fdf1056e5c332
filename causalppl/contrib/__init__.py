"""Pyro's ``pyro.contrib`` names that moved into the core: ``contrib.autoguide`` is :mod:`causalppl.infer.autoguide`."""

from causalppl.contrib import autoguide

__all__ = ["autoguide"]
