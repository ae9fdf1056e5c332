"""Tests for causalppl.settings: get/set/context over registered aliases, validators, register."""

import pytest
import torch

import causalppl as cp
from causalppl import settings

RATE = 0.5


def test_built_in_settings_and_what_they_control():
    assert settings.get() == {"module_local_params": False, "validate_distributions_pyro": True,
                              "validate_distributions_torch": True, "validate_infer": True,
                              "validate_poutine": True}
    with settings.context(validate_infer=False, validate_distributions_torch=False):
        assert not cp.runtime.is_validation_enabled()
        assert not torch.distributions.Distribution._validate_args
    assert cp.runtime.is_validation_enabled() and torch.distributions.Distribution._validate_args
    with pytest.raises(TypeError, match="True or False"):
        settings.set(validate_poutine="yes")
    with pytest.raises(KeyError, match="unknown setting 'nope'"):
        settings.get("nope")


def test_register_a_setting_with_a_validator():
    @settings.register("test_rate", __name__, "RATE")
    def _check(value):
        if not 0 < value < 1:
            raise ValueError(f"rate must be in (0, 1), got {value}")

    try:
        assert settings.get("test_rate") == 0.5
        settings.set(test_rate=0.25)
        assert RATE == 0.25  # the variable itself is the setting
        with pytest.raises(ValueError, match="got 2"):
            settings.set(test_rate=2)

        @settings.context(test_rate=0.75)
        def read():
            return settings.get("test_rate")

        assert read() == 0.75 and settings.get("test_rate") == 0.25
    finally:
        settings.set(test_rate=0.5)
        del settings._REGISTRY["test_rate"]
