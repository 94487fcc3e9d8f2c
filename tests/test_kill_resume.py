"""A real training command killed with SIGKILL at a random moment loses at most one checkpoint
interval, and run again finishes every step."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
from tiny_models import save_tiny_gpt2

WORKER = Path(__file__).with_name("cli_worker.py")
STEPS, BATCH, SEQ = 96, 4, 32  # the smoke profile's batch, cli_worker's sequence length
INTERVAL = STEPS // 8  # distill's checkpoint interval


def start(out: Path, teacher: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TINY_TEACHERS": f"a={teacher}", "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [
        sys.executable,
        str(WORKER),
        "distill",
        "--stage",
        "ce",
        "--model",
        "a",
        "--profile",
        "smoke",
        "--tokens",
        str(STEPS * BATCH * SEQ),
        "--out",
        str(out),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)


def checkpoint_step(run: Path) -> int:
    path = run / "checkpoint.pt"
    return int(torch.load(path, weights_only=False)["step"]) if path.exists() else 0


def wait_for_checkpoint(
    run: Path, after: int, process: subprocess.Popen, timeout: float = 180
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if (step := checkpoint_step(run)) > after:
                return step
        except (EOFError, RuntimeError):  # replaced while read
            pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint after step {after} in {run} (exit {process.poll()})")


def shown_step(log: Path) -> int:
    """The last step the progress bar showed."""
    steps = re.findall(rf"(\d+)/{STEPS} \[", log.read_text())
    return int(steps[-1]) if steps else 0


def test_kill_9_at_a_random_moment_loses_at_most_one_checkpoint_interval(tmp_path):
    teacher, out, log = (
        save_tiny_gpt2(tmp_path / "teacher"),
        tmp_path / "out",
        tmp_path / "stderr.txt",
    )
    run = out / "stage-ce-teacher"

    process = start(out, teacher, log)
    first = wait_for_checkpoint(run, 0, process)
    start_time = time.monotonic()
    wait_for_checkpoint(run, first, process)
    interval_seconds = time.monotonic() - start_time  # this machine: kill within 2 more
    time.sleep(random.Random(os.getpid()).uniform(0.0, 2 * interval_seconds))
    assert process.poll() is None, "the run must still be training when it is killed"
    process.kill()  # SIGKILL: no handler runs
    process.wait(timeout=60)
    reached, kept = shown_step(log), checkpoint_step(run)
    assert 0 < kept and reached - kept <= INTERVAL, (
        f"killed at step {reached} or later, kept step {kept}"
    )

    process = start(out, teacher, log)
    assert process.wait(timeout=300) == 0, log.read_text()[-2000:]
    history = json.loads((run / "log.json").read_text())
    assert history["finished"] and [r["step"] for r in history["records"]] == list(
        range(1, STEPS + 1)
    )
    assert "Traceback" not in log.read_text() and not (run / "checkpoint.pt").exists()
