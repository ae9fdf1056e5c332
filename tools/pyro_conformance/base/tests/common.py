"""The helpers Pyro's tests import from ``tests.common``, for running them against causalppl.

Comparisons recurse through dicts and sequences; tensors compare by
shape and then elementwise within ``prec`` (NaNs must sit in the same places).
"""
import contextlib
import numbers
import os
import re
import shutil
import tempfile
import warnings

import numpy as np
import pytest
import torch

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
RESOURCE_DIR = os.path.join(TESTS_DIR, "resources")
EXAMPLES_DIR = os.path.join(os.path.dirname(TESTS_DIR), "examples")


def _missing(module):
    try:
        __import__(module)
        return False
    except ImportError:
        return True


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="cuda is not available")
requires_funsor = pytest.mark.skipif(_missing("funsor"), reason="funsor is not available")
requires_horovod = pytest.mark.skipif(_missing("horovod"), reason="horovod is not available")
requires_lightning = pytest.mark.skipif(_missing("lightning"), reason="lightning is not available")
requires_scipy = pytest.mark.skipif(_missing("scipy"), reason="scipy is not available")


def xfail_param(*args, **kwargs):
    return pytest.param(*args, marks=[pytest.mark.xfail(**{"reason": "unknown", **kwargs})])


def skipif_param(*args, **kwargs):
    return pytest.param(*args, marks=[pytest.mark.skipif(**kwargs)])


def str_erase_pointers(x):
    return re.sub(" at 0x[a-f0-9]+", "", str(x))


def suppress_warnings(fn):
    def quiet(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*args, **kwargs)
    return quiet


@contextlib.contextmanager
def TemporaryDirectory():
    path = tempfile.mkdtemp()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def freeze_rng_state():
    state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(state)


@contextlib.contextmanager
def xfail_if_not_implemented(msg="Not implemented"):
    try:
        yield
    except NotImplementedError as error:
        pytest.xfail(reason=f"{msg}: {error}")


@contextlib.contextmanager
def tensors_default_to(host):
    yield


def is_iterable(obj):
    try:
        iter(obj)
    except TypeError:
        return False
    return True


def assert_tensors_equal(a, b, prec=0.0, msg=""):
    assert a.shape == b.shape, msg or f"shapes {tuple(a.shape)} vs {tuple(b.shape)}"
    if a.numel() == 0:
        return
    b = b.to(dtype=a.dtype, device=a.device)
    if isinstance(prec, numbers.Number) and prec == 0:
        assert bool((a == b).all()), msg or f"{a} vs {b}"
        return
    assert torch.equal(a.isnan(), b.isnan()), msg or f"NaNs differ: {a} vs {b}"
    gap = torch.where((a == b) | a.isnan(), torch.zeros_like(a), a - b)
    gap = gap.abs() if gap.is_signed() else gap
    assert bool((gap <= prec).all()), msg or f"{a} vs {b} (prec {prec})"


def _compare(actual, expected, tensors, numbers_, msg):
    if isinstance(actual, numbers.Number) and isinstance(expected, numbers.Number):
        numbers_(actual, expected)
    elif torch.is_tensor(actual) and torch.is_tensor(expected):
        tensors(actual, expected)
    elif type(actual) is not type(expected):
        raise AssertionError(f"cannot compare {type(actual)} and {type(expected)}")
    elif isinstance(actual, np.ndarray):
        tensors(torch.as_tensor(actual), torch.as_tensor(expected))
    elif isinstance(actual, dict):
        assert set(actual) == set(expected), msg or f"keys {set(actual)} vs {set(expected)}"
        for key in actual:
            _compare(actual[key], expected[key], tensors, numbers_, msg)
    elif isinstance(actual, str) or not is_iterable(actual):
        assert actual == expected, msg or f"{actual} vs {expected}"
    else:
        actual, expected = list(actual), list(expected)
        assert len(actual) == len(expected), msg or f"lengths {len(actual)} vs {len(expected)}"
        for x, y in zip(actual, expected):
            _compare(x, y, tensors, numbers_, msg)


def assert_close(actual, expected, atol=1e-7, rtol=0, msg=""):
    def tensors(a, b):
        prec = atol + rtol * b.abs() if rtol > 0 else atol
        assert_tensors_equal(a, b, prec, msg)

    def scalars(a, b):
        assert a == pytest.approx(b, abs=atol, rel=rtol), msg or f"{a} vs {b}"

    _compare(actual, expected, tensors, scalars, msg)


def assert_equal(actual, expected, prec=1e-5, msg=""):
    if prec > 0:
        return assert_close(actual, expected, atol=prec, msg=msg)

    def scalars(a, b):
        assert a == b, msg or f"{a} vs {b}"

    _compare(actual, expected, lambda a, b: assert_tensors_equal(a, b, 0.0, msg), scalars, msg)


def assert_not_equal(x, y, prec=1e-5, msg=""):
    try:
        assert_equal(x, y, prec)
    except AssertionError:
        return
    raise AssertionError(f"{msg}\nValues are equal: x={x}, y={y}, prec={prec}")
