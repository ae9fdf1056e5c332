"""Per-test set-up as in Pyro's suite: a fresh param store, validation on, seeds from ``init`` markers
(tests under tests/infer default to seed 123, as Pyro's tests/infer/conftest.py does)."""
import causalppl as cp


def pytest_configure(config):
    for line in ("init(rng_seed): seed the RNG", "stage(NAME): a test stage", "disable_validation: off",
                 "benchmark: benchmark"):
        config.addinivalue_line("markers", line)


def pytest_runtest_setup(item):
    cp.clear_param_store()
    cp.enable_validation(item.get_closest_marker("disable_validation") is None)
    marker = item.get_closest_marker("init")
    if marker:
        cp.set_rng_seed(marker.kwargs["rng_seed"])
    elif item.nodeid.startswith("tests/infer"):
        cp.set_rng_seed(123)
