"""Batches in the training loop: a tensor [B, ...] or a dict of tensors [B, ...], mapped, counted,
cut into one slice per process, and the step's numbers averaged over processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Batch = Any  # a tensor [B, ...] or a dict of tensors [B, ...]


def map_batch(batch: Batch, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
    """`fn` applied to a batch's tensor, or to each tensor of a dict batch."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: fn(v) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    raise TypeError(f"a batch must be a tensor or a dict of tensors, got {type(batch).__name__}")


def batch_tokens(batch: Batch) -> int:
    """The tokens in a batch: its input_ids' (or first tensor's) element count."""
    if isinstance(batch, dict):
        batch = batch.get(
            "input_ids", next(v for v in batch.values() if isinstance(v, torch.Tensor))
        )
    return int(batch.numel())


def shard(batch: Batch, rank: int, world: int) -> Batch:
    """This process's contiguous slice of a global batch."""
    if world == 1:
        return batch

    def cut(t: torch.Tensor) -> torch.Tensor:
        if t.shape[0] % world:
            raise ValueError(
                f"global batch of {t.shape[0]} sequences does not split over {world} processes; "
                f"use a batch size divisible by {world}"
            )
        n = t.shape[0] // world
        return t[rank * n : (rank + 1) * n]

    return map_batch(batch, cut)


def mean_over_processes(
    accelerator, loss: torch.Tensor, metrics: dict[str, float], stop: bool
) -> tuple[float, dict[str, float], bool]:
    """The step's loss and metrics averaged over processes (one all-reduce); each process has its
    shard's. Also whether any process was asked to stop, so that all of them stop after the same
    step."""
    names = sorted(metrics)
    values = torch.stack(
        [
            loss.float(),
            torch.tensor(float(stop), device=loss.device),
            *(torch.tensor(float(metrics[k]), device=loss.device) for k in names),
        ]
    )
    values = accelerator.reduce(values, reduction="mean").tolist()
    return values[0], dict(zip(names, values[2:], strict=False)), values[1] > 0
