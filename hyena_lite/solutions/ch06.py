"""Chapter 6's solutions: the masked normalised MSE and the teacher-forced input by hand."""

from __future__ import annotations

import torch


def nmse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None):
    """Squared error over the target's energy, both summed over the kept positions only."""
    error, energy = (pred - target).pow(2).sum(-1), target.pow(2).sum(-1)
    if mask is not None:
        error, energy = error * mask, energy * mask
    return error.sum() / energy.sum()


def teacher_input(teacher, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """Token plus position embeddings, blocks 0 .. layer-1, then block `layer`'s ln_1."""
    t = teacher.transformer
    hidden = t.wte(ids) + t.wpe(torch.arange(ids.shape[1], device=ids.device))
    for block in t.h[:layer]:
        hidden = block(hidden)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
    return t.h[layer].ln_1(hidden)
