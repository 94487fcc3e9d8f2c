"""Profiles: selection by name and environment, and the error for an unknown one."""

import pytest

from hyena_lite import profiles
from hyena_lite.profiles import ENV_VAR, PROFILES, get_profile


def test_named_profiles_exist():
    assert set(PROFILES) == {"smoke", "cpu", "gpu", "gpu-offline"}
    for name, profile in PROFILES.items():
        assert profile.name == name


def test_environment_variable_chooses(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "smoke")
    assert get_profile().name == "smoke"
    monkeypatch.setenv(ENV_VAR, " CPU ")
    assert get_profile().name == "cpu"


def test_unset_follows_hardware(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr("hyena_lite.hub.reachable", lambda: True)
    monkeypatch.setattr(profiles, "_cuda_available", lambda: True)
    assert get_profile().name == "gpu"
    monkeypatch.setattr(profiles, "_cuda_available", lambda: False)
    assert get_profile().name == "cpu"


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(
        ValueError,
        match="unknown profile 'laptop'; valid profiles are smoke, cpu, gpu, gpu-offline",
    ):
        get_profile("laptop")


def test_smoke_is_smallest():
    smoke, cpu = get_profile("smoke"), get_profile("cpu")
    assert smoke.teacher_tokens < cpu.teacher_tokens
    assert smoke.distill_tokens < cpu.distill_tokens
    assert smoke.replace(seq_len=8).seq_len == 8 and smoke.seq_len != 8
