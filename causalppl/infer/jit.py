"""Pyro's JIT-compiled ELBO names, for scripts that ask for them.

causalppl does not trace the loss with ``torch.jit``; these classes compute
the very same loss eagerly (``fit(compile=True)`` is the way to compile a
step). They accept Pyro's ``ignore_jit_warnings`` and ``jit_options``.

>>> import causalppl as cp
>>> isinstance(JitTrace_ELBO(ignore_jit_warnings=True), cp.infer.Trace_ELBO)
True
"""

from causalppl.infer.elbo import Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO


class JitTrace_ELBO(Trace_ELBO):
    """:class:`Trace_ELBO`, under Pyro's JIT name (computed eagerly)."""


class JitTraceGraph_ELBO(TraceGraph_ELBO):
    """:class:`TraceGraph_ELBO`, under Pyro's JIT name (computed eagerly)."""


class JitTraceMeanField_ELBO(TraceMeanField_ELBO):
    """:class:`TraceMeanField_ELBO`, under Pyro's JIT name (computed eagerly)."""
