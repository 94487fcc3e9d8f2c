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


def bad_mixers() -> tuple[float, float, float]:
    """Zeros leave the target's energy (1); 2t errs by t (1); -t errs by 2t (4)."""
    return 1.0, 1.0, 4.0


def worst_layer(forced: list[float], free: list[float]) -> int:
    """The layer with the largest free-running minus teacher-forced NMSE; layer 0 has no gap,
    since both runs feed it the same embeddings."""
    gaps = [f - t for f, t in zip(free, forced, strict=True)]
    return gaps.index(max(gaps))
