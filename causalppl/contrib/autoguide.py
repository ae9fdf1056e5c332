"""Pyro's former ``pyro.contrib.autoguide`` path: every name of :mod:`causalppl.infer.autoguide`.

>>> from causalppl.contrib.autoguide import AutoDiagonalNormal
>>> AutoDiagonalNormal.__module__
'causalppl.infer.autoguide'
"""

from causalppl.infer.autoguide import *  # noqa: F401,F403
from causalppl.infer.autoguide import __all__  # noqa: F401
