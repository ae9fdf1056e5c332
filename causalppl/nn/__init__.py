"""Neural-network modules as probabilistic programs: :class:`PyroModule`, :class:`PyroParam`, :class:`PyroSample`.

See :mod:`causalppl.nn.module`.
"""

from causalppl.nn.auto_reg_nn import AutoRegressiveNN
from causalppl.nn.module import PyroModule, PyroParam, PyroSample, clear, pyro_method, to_pyro_module_

__all__ = ["AutoRegressiveNN", "PyroModule", "PyroParam", "PyroSample", "clear", "pyro_method", "to_pyro_module_"]
