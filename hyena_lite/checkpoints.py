"""How a training run stops and resumes: a first SIGTERM or SIGINT asks it to stop after the step
under way; checkpoints hold the random state of every generator and are written atomically; the
run's log says whether an out_dir holds a finished run of this config.

Taught in chapter 7, where a stopped distillation resumes exactly.
"""

from __future__ import annotations

import random
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hyena_lite import runs

if TYPE_CHECKING:
    from hyena_lite.training import TrainConfig, TrainResult


def rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's, PyTorch's (and CUDA's) random generators."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a file."""
    runs.torch_save(obj, path)


def write_log(path: Path, config: TrainConfig, result: TrainResult, stopped: str | None) -> None:
    """The run's config, records, evaluations, and whether it finished or why it stopped."""
    payload = {
        "config": config.identity(),
        "finished": result.finished,
        "stopped": stopped,
        "records": result.records,
        "evals": result.evals,
    }
    runs.write_json(path, payload)


def read_log(out_dir: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The log of an earlier run in out_dir, or None; raises when it was a run with another
    config."""
    path = out_dir / "log.json"
    if not path.exists():
        return None
    log = runs.read_json(path)  # a truncated log is named (hyena_lite.runs)
    new = config.identity()
    if "context" in new and "context" not in log["config"]:  # written before run identities
        runs.set_aside(out_dir, "holds a run that does not record its teacher, data and model")
        return None
    if log["config"] != new:
        diff = {
            k: (log["config"].get(k), new.get(k))
            for k in sorted(set(new) | set(log["config"]))
            if log["config"].get(k) != new.get(k)
        }
        raise ValueError(
            f"{out_dir} holds a run with another config (old, new): {diff}; "
            f"choose another out_dir or delete that folder to start again"
        )
    return log


def own_rng_state(saved: dict | list, rank: int, world: int) -> dict[str, Any]:
    """This process's random state in a checkpoint (one state per process; older checkpoints hold
    one)."""
    if isinstance(saved, dict):
        saved = [saved]
    if len(saved) != world:
        warnings.warn(
            f"the checkpoint was written by {len(saved)} process(es), this run has {world}: the "
            f"weights, "
            f"optimiser and data resume exactly, random numbers (dropout) do not",
            stacklevel=3,
        )
    return saved[rank % len(saved)]


def checkpoint_step(path: Path) -> int:
    """The optimiser step a checkpoint file was written at."""
    return int(runs.torch_load(path, weights_only=False)["step"])


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """While training, the first SIGTERM or SIGINT asks the loop to stop after the current step; a
    second one stops at once. Signals are only caught in the main thread (elsewhere Python
    cannot)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, _frame):
        if received:
            raise KeyboardInterrupt(f"signal {signum} twice: stopped without a checkpoint")
        received.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
