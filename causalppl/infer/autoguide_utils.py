"""Small helpers Pyro keeps in ``pyro.infer.autoguide.utils``.

>>> _product((2, 3, 4))
24
"""

from __future__ import annotations

import math


def _product(shape):
    """The number of elements of a tensor of this shape (1 for ``()``)."""
    return math.prod(shape)


product = _product

__all__ = ["product"]
