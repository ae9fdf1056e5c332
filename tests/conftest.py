"""Shared fixtures: every test starts with an empty param store and handler stack."""

import pytest
import torch

import causalppl as cp
from causalppl import runtime


@pytest.fixture(autouse=True)
def clean_state():
    """Clear the global param store, and check no test leaves a handler on the stack."""
    cp.clear_param_store()
    runtime.HANDLER_STACK.clear()
    yield
    cp.clear_param_store()
    leftover = list(runtime.HANDLER_STACK)
    runtime.HANDLER_STACK.clear()
    assert not leftover, f"handlers left on the stack: {leftover}"


@pytest.fixture
def one_thread_seeded():
    """One torch thread (tiny tensors: extra threads only add contention) and seed 0."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cp.set_rng_seed(0)
    yield
    torch.set_num_threads(threads)
