"""Tests of the training loop on several processes: 2 CPU processes over gloo train like one at the same global batch."""
from __future__ import annotations

import argparse

import pytest

from hyena_lite.training import _own_rng_state


def test_two_cpu_processes_train_like_one_at_the_same_global_batch(load_script):
    """The tiny KD run (16 steps, global batch 4 x 2 micro-batches) on 1 process and on 2 (torchrun, gloo).

    Tolerance: in float32 the two runs compute the same mathematics (the mean gradient over 4 rows is the
    mean of two 2-row means, as the shards are equal and unpadded) in another summation order, so they
    differ by rounding alone: measured 3e-7 relative (2-4 ulps of float32's 1.2e-7). 1e-5 (about 80 ulps)
    leaves room for other BLAS thread orders while staying far below what a broken loop gives: logging one
    process's loss instead of the mean is 1e-2 off, skipping the gradient all-reduce 5e-2, and another data
    order (the noise) 3e-2. Each process's rows, the weights and an exact resume are checked exactly.
    """
    script = load_script("multi_gpu_check")
    report = script.check(argparse.Namespace(size="tiny", processes=2, device="cpu", tokens=None, steps=None))
    checks = report["checks"]
    assert checks["shards_partition_each_global_batch"], "each process must train on its own rows, all together on all"
    assert checks["single_saw_every_row"]
    assert checks["weights_identical_across_processes"], "gradients must be averaged: the processes' weights drifted"
    assert checks["losses_identical_across_processes"], "every process must log the mean loss over processes"
    assert report["multi_vs_single"]["max_rel"] <= 1e-5, report["multi_vs_single"]
    for name, diff in report["multi_vs_single_metrics"].items():
        assert diff["max_abs"] <= 1e-5, f"metric {name} is not the mean over processes: {diff}"
    assert checks["resume_max_abs_diff"] <= 1e-6, "an interrupted 2-process run with dropout must resume exactly"
    assert report["noise"]["noise_vs_single"]["mean_abs"] > 100 * report["multi_vs_single"]["mean_abs"]
    assert report["within_noise"]
    assert report["curves"]["single"][-1] < report["curves"]["single"][0] - 0.3, "the run must learn something"


def test_checkpoint_random_states_per_process():
    states = [{"process": 0}, {"process": 1}]
    assert _own_rng_state(states, 1, 2) == {"process": 1}
    assert _own_rng_state({"process": 0}, 0, 1) == {"process": 0}, "a checkpoint of one process holds one state"
    with pytest.warns(UserWarning, match="written by 2 process"):
        assert _own_rng_state(states, 0, 1) == {"process": 0}
