"""A copy-aware loss: teach a hybrid's attention the induction pattern where copying is right.

An induction head at position t attends to s + 1, where s < t is the last earlier position holding
t's token: what followed it then is the guess for what follows now (Olsson et al., 2022). Where that
guess is right (the token at s + 1 is the token at t + 1), the target is known from the data alone,
in copy and recall rows and wherever ordinary text repeats itself. The loss is the negative log of
the attention that the best head of any attention layer pays to that target: the student may build
its copying circuit in whichever head it likes. Taught in chapter 12.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def induction_targets(ids: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """For ids [B, L]: each position's induction target (s + 1 for the last earlier s with the same
    token; 0 where there is none) and whether copying from it is right (the token at s + 1 is the
    next token; never at the last position, or where `mask` marks t or t + 1 as padding)."""
    if ids.dim() != 2:
        raise ValueError(f"ids must have shape [batch, length], got {tuple(ids.shape)}")
    length = ids.shape[1]
    positions = torch.arange(length, device=ids.device)
    earlier = positions[None, :] < positions[:, None]  # [t, s]: s < t
    same = (ids[:, :, None] == ids[:, None, :]) & earlier
    last = torch.where(same, positions, -1).amax(-1)  # [B, L]; -1: no earlier occurrence
    targets = (last + 1).clamp_min(0)
    copyable = torch.zeros_like(ids, dtype=torch.bool)
    continued = ids.gather(1, targets[:, :-1]) == ids[:, 1:]
    copyable[:, :-1] = (last[:, :-1] >= 0) & continued
    if mask is not None:
        kept = mask.bool()
        copyable[:, :-1] &= kept[:, :-1] & kept[:, 1:]
        copyable[:, -1] = False
    return targets.where(copyable, 0), copyable


def attention_on_targets(attentions: Sequence[Tensor], targets: Tensor) -> Tensor:
    """The attention [B, L] that the best head of any layer (attentions: [B, heads, L, L] per
    attention layer) pays, from each position, to its induction target."""
    if not attentions:
        raise ValueError(
            "the induction loss needs attention probabilities, and the model returned none: "
            "keep at least one attention layer (a hybrid) and run it with output_attentions=True "
            "under eager attention"
        )
    heads = torch.cat([a.float() for a in attentions], dim=1)  # [B, all heads, L, L]
    index = targets[:, None, :, None].expand(-1, heads.shape[1], -1, 1)
    return heads.gather(-1, index).squeeze(-1).amax(1)


def induction_loss(attentions: Sequence[Tensor], targets: Tensor, copyable: Tensor) -> Tensor:
    """Mean over copyable positions of -log(the largest attention any head of any layer pays to the
    position's induction target); attentions: [B, heads, L, L] per attention layer. Zero (with a
    gradient) where no position is copyable."""
    nll = -attention_on_targets(attentions, targets).clamp_min(1e-6).log()
    kept = copyable.to(nll.dtype)
    return (nll * kept).sum() / kept.sum().clamp_min(1.0)
