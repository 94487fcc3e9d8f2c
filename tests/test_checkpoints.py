"""How a run stops and resumes: random states, atomic files, the log's config check, signals."""

from __future__ import annotations

import os
import random
import signal

import numpy as np
import pytest
import torch

from hyena_lite.checkpoints import (
    atomic_save,
    checkpoint_step,
    read_log,
    rng_state,
    set_rng_state,
    stop_requests,
    write_log,
)
from hyena_lite.training import TrainConfig, TrainResult


def test_rng_state_restores_every_generator():
    state = rng_state()
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_atomic_save_leaves_only_the_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"step": 7}, path)
    assert checkpoint_step(path) == 7 and os.listdir(tmp_path) == ["checkpoint.pt"]


def test_the_log_refuses_a_run_with_another_config(tmp_path):
    config = TrainConfig(steps=3, lr=1e-3)
    assert read_log(tmp_path, config) is None
    write_log(tmp_path / "log.json", config, TrainResult(records=[{"step": 1}]), stopped=None)
    assert read_log(tmp_path, config)["records"] == [{"step": 1}]
    with pytest.raises(ValueError, match="holds a run with another config"):
        read_log(tmp_path, TrainConfig(steps=3, lr=2e-3))


def test_a_first_signal_asks_to_stop_and_a_second_stops_at_once():
    before = signal.getsignal(signal.SIGTERM)
    with stop_requests() as received:
        os.kill(os.getpid(), signal.SIGTERM)
        assert received == [signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt, match="twice"):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before  # the old handler is back
