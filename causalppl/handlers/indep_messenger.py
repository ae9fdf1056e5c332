"""Pyro's ``pyro.poutine.indep_messenger`` path: ``CondIndepStackFrame`` (a plate's record on a site).

>>> from causalppl.handlers.indep_messenger import CondIndepStackFrame
>>> CondIndepStackFrame("rows", -1, 10, 3).vectorized
True
"""

from causalppl.runtime import CondIndepStackFrame

__all__ = ["CondIndepStackFrame"]
