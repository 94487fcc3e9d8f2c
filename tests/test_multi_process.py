"""Tests of the training loop on several processes: 2 CPU processes over gloo train like one at the
same global batch."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hyena_lite.checkpoints import own_rng_state


def test_two_cpu_processes_train_like_one_at_the_same_global_batch(load_script):
    """The tiny KD run (16 steps, global batch 4 x 2 micro-batches) on 1 process and on 2 (torchrun,
    gloo).

    Tolerance: in float32 the two runs compute the same mathematics (the mean gradient over 4 rows
    is the
    mean of two 2-row means, as the shards are equal and unpadded) in another summation order, so
    they
    differ by rounding alone: measured 3e-7 relative (2-4 ulps of float32's 1.2e-7). 1e-5 (about 80
    ulps)
    leaves room for other BLAS thread orders while staying far below what a broken loop gives:
    logging one
    process's loss instead of the mean is 1e-2 off, skipping the gradient all-reduce 5e-2, and
    another data
    order (the noise) 3e-2. Each process's rows, the weights and an exact resume are checked
    exactly.
    """
    script = load_script("multi_gpu_check")
    report = script.check(
        argparse.Namespace(size="tiny", processes=2, device="cpu", tokens=None, steps=None)
    )
    checks = report["checks"]
    assert checks["shards_partition_each_global_batch"], (
        "each process must train on its own rows, all together on all"
    )
    assert checks["single_saw_every_row"]
    assert checks["weights_identical_across_processes"], (
        "gradients must be averaged: the processes' weights drifted"
    )
    assert checks["losses_identical_across_processes"], (
        "every process must log the mean loss over processes"
    )
    assert report["multi_vs_single"]["max_rel"] <= 1e-5, report["multi_vs_single"]
    for name, diff in report["multi_vs_single_metrics"].items():
        assert diff["max_abs"] <= 1e-5, f"metric {name} is not the mean over processes: {diff}"
    assert checks["resume_max_abs_diff"] <= 1e-6, (
        "an interrupted 2-process run with dropout must resume exactly"
    )
    assert (
        report["noise"]["noise_vs_single"]["mean_abs"] > 100 * report["multi_vs_single"]["mean_abs"]
    )
    assert report["within_noise"]
    assert report["curves"]["single"][-1] < report["curves"]["single"][0] - 0.3, (
        "the run must learn something"
    )


def test_attention_transfer_on_two_cpu_processes_keeps_the_mixers_in_step(tmp_path):
    """distill.transfer trains a MixerSet (a module called with a dict of layers) through DDP on two
    processes (torchrun, gloo): both must hold identical mixers after every step's all-reduce, and
    learn.

    The two runs are not the one-process run to rounding, unlike KD: the normalised MSE is a ratio
    (error over the target's energy), and each process takes it over its own rows, so the 2-process
    loss is the mean of two half-batch ratios, not the whole batch's ratio (measured 3% apart at the
    first step).
    """
    worker = str(Path(__file__).with_name("transfer_worker.py"))
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    for cmd in (
        [sys.executable, worker, str(one)],
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            worker,
            str(two),
        ],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    single = torch.load(one, weights_only=False)
    ranks = [torch.load(f"{two}.rank{r}", weights_only=False) for r in range(2)]
    assert ranks[0]["losses"] == ranks[1]["losses"], (
        "every process must log the mean loss over processes"
    )
    for name, value in ranks[0]["weights"].items():
        assert torch.equal(ranks[1]["weights"][name], value), (
            f"{name}: the processes' mixers drifted apart"
        )
    for run in (single, ranks[0]):
        assert run["losses"][-1] < 0.8 * run["losses"][0], "the run must learn something"
    assert ranks[0]["losses"] == pytest.approx(single["losses"], rel=0.1), (
        "the same objective, up to the shard ratio"
    )


def test_checkpoint_random_states_per_process():
    states = [{"process": 0}, {"process": 1}]
    assert own_rng_state(states, 1, 2) == {"process": 1}
    assert own_rng_state({"process": 0}, 0, 1) == {"process": 0}, (
        "a checkpoint of one process holds one state"
    )
    with pytest.warns(UserWarning, match="written by 2 process"):
        assert own_rng_state(states, 0, 1) == {"process": 0}
