"""The losses of distillation, and the mean next-token NLL every validation and perplexity uses.

Taught in chapters 6 (normalised MSE of a layer's output), 7 (KD, cross-entropy) and 12 (the
stream's error token by token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher || student) of the softened next-token distributions, times T^2, averaged over
    kept tokens. Taught in chapter 7."""
    t = temperature
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
    per_token = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1) * t * t
    return _masked_mean(per_token, mask)


def normalized_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """||pred - target||^2 / ||target||^2 over kept positions: 0 is a perfect match, 1 is as bad as
    zeros. Taught in chapter 6."""
    error = (pred.float() - target.float()).pow(2).sum(-1)
    energy = target.float().pow(2).sum(-1)
    if mask is not None:
        error, energy = error * mask, energy * mask
    return error.sum() / energy.sum().clamp_min(1e-12)


def token_nmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B, L] normalised squared errors ||pred - target||^2 / ||target||^2 of every token of
    [B, L, D] states: each token weighs the same, however large its norm."""
    error = (pred.float() - target.float()).pow(2).sum(-1)
    return error / target.float().pow(2).sum(-1).clamp_min(1e-12)


def stream_loss(
    student_states: Sequence[torch.Tensor],
    teacher_states: Sequence[torch.Tensor],
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over blocks and kept tokens of log(1 + token_nmse) between two residual streams.

    Token by token, so that no token hides behind the teacher's massive first one; the logarithm
    keeps the gradient of a spurious massive activation (an error of 10^4) about the size of an
    ordinary token's instead of 10^4 times it. Taught in chapter 12."""
    if len(student_states) != len(teacher_states) or not student_states:
        raise ValueError(
            f"stream_loss needs as many student states as teacher states (one per block), got "
            f"{len(student_states)} and {len(teacher_states)}"
        )
    per_block = [
        _masked_mean(torch.log1p(token_nmse(s, t)), mask)
        for s, t in zip(student_states, teacher_states, strict=True)
    ]
    return torch.stack(per_block).mean()


def weighted_sum(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """sum_k weights[k] * terms[k] over the terms with a non-zero weight."""
    used = [weights[k] * v for k, v in terms.items() if weights.get(k, 0.0)]
    if not used:
        raise ValueError(f"every loss weight is zero ({weights}); give at least one term a weight")
    return torch.stack(used).sum()


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def lm_cross_entropy(
    logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Next-token cross-entropy (nats per token) of logits [B, L, V] on ids [B, L], ignoring padded
    targets."""
    per_token = F.cross_entropy(
        logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten(), reduction="none"
    )
    return _masked_mean(per_token, None if mask is None else mask[:, 1:].flatten())


def shift_for_next_token(
    logits: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits that predict a real next token (drop the last position), with the matching mask."""
    return logits[:, :-1], None if mask is None else mask[:, 1:]


def validation_loss(
    model: nn.Module,
    windows: torch.Tensor,
    batch_size: int = 8,
    logits: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """Mean next-token cross-entropy (nats) of a model over token windows [N, L], in evaluation
    mode and without gradients; exp() of it is the perplexity. `logits(ids)` stands in for
    `model(input_ids=ids).logits` (a decoder's prefill, say). Taught in chapter 6."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(windows), batch_size):
                ids = windows[start : start + batch_size].to(device)
                out = model(input_ids=ids).logits if logits is None else logits(ids)
                n = ids.shape[0] * (ids.shape[1] - 1)
                total, count = total + lm_cross_entropy(out, ids).item() * n, count + n
    finally:
        model.train(was_training)
    return total / count
