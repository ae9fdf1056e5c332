"""Nesterov's dual averaging, as used to adapt the HMC/NUTS step size (Pyro's ``pyro.ops.dual_averaging``).

:class:`DualAveraging` lives in :mod:`causalppl.infer.mcmc.adaptation`; a
gradient ``g_t`` drives the iterate ``x_t = prox_center - sqrt(t) / gamma * gbar_t`` with
``gbar_t = sum(g_1..g_t) / (t + t0)``, and ``x_avg`` averages the iterates with weights ``t**-kappa``:

>>> da = DualAveraging(prox_center=0.0)
>>> for _ in range(4):
...     da.step(1.0)
>>> x_t, x_avg = da.get_state()
>>> round(x_t, 6), x_avg < 0                     # -sqrt(4) / 0.05 * 4 / 14
(-11.428571, True)
"""

from causalppl.infer.mcmc.adaptation import DualAveraging

__all__ = ["DualAveraging"]
