"""A copy-aware loss: teach a hybrid's attention the induction pattern where copying is right.

An induction head at position t attends to s + 1, where s < t is the last earlier position holding
t's token: what followed it then is the guess for what follows now (Olsson et al., 2022). Where that
guess is right (the token at s + 1 is the token at t + 1), the target is known from the data alone,
in copy and recall rows and wherever ordinary text repeats itself. The loss is the negative log of
the attention that the best head of any attention layer pays to that target: the student may build
its copying circuit in whichever head it likes. Looking at the target is half of copying: the
read-out loss asks that what the attention layer then writes be the next token, read by the
model's final norm and head alone (the logit lens) or as its direct effect on the model's logits.
Taught in chapter 12.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyena_lite.students import HyenaMixer, family_of, layer_mixers


def induction_targets(ids: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """For ids [B, L]: each position's induction target (s + 1 for the last earlier s with the same
    token; 0 where there is none) and whether copying from it is right (the token at s + 1 is the
    next token; never at the last position, or where `mask` marks t or t + 1 as padding)."""
    if ids.dim() != 2:
        raise ValueError(f"ids must have shape [batch, length], got {tuple(ids.shape)}")
    last = last_earlier(ids)  # [B, L]; -1: no earlier occurrence
    targets = (last + 1).clamp_min(0)
    copyable = torch.zeros_like(ids, dtype=torch.bool)
    continued = ids.gather(1, targets[:, :-1]) == ids[:, 1:]
    copyable[:, :-1] = (last[:, :-1] >= 0) & continued
    if mask is not None:
        kept = mask.bool()
        copyable[:, :-1] &= kept[:, :-1] & kept[:, 1:]
        copyable[:, -1] = False
    return targets.where(copyable, 0), copyable


def last_earlier(ids: Tensor) -> Tensor:
    """For ids [..., L]: per position the last earlier position holding the same token along the
    last dimension, -1 where there is none (one stable sort: linear memory)."""
    order = torch.argsort(ids, dim=-1, stable=True)  # equal tokens in order of position
    ranked = ids.gather(-1, order)
    repeat = ranked[..., 1:] == ranked[..., :-1]
    last = torch.full_like(ids, -1)
    return last.scatter(-1, order[..., 1:], torch.where(repeat, order[..., :-1], -1))


def copyable_in_text(ids: Tensor, reach: int) -> Tensor:
    """For a long 1-D text: per target ids[1:], whether copying predicts it (the token after the
    last earlier occurrence of the current token is the next one, that occurrence at most `reach`
    tokens back): `induction_targets`' rule, for scoring texts of any length."""
    if ids.dim() != 1:
        raise ValueError(f"ids must be one text, shape [length], got {tuple(ids.shape)}")
    if reach < 1:
        raise ValueError(f"reach must be at least 1 token, got {reach}")
    t = torch.arange(len(ids) - 1, device=ids.device)
    s = last_earlier(ids)[:-1]
    found = (s >= 0) & (t - s <= reach)
    return found & (ids[(s + 1).clamp_min(0)] == ids[1:])


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


def attention_layers(model: nn.Module) -> list[int]:
    """The layers of a teacher or hybrid whose token mixer is attention (not a HyenaMixer)."""
    return [i for i, m in enumerate(layer_mixers(model)) if not isinstance(m, HyenaMixer)]


def logit_lens(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """hidden [..., D] -> logits [..., vocab] as the model reads its last hidden state: its family's
    final norm, then its head."""
    norm, head = family_of(model).final_norm(model), model.get_output_embeddings()
    return lambda hidden: head(norm(hidden))


@contextmanager
def final_residual(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Record the residual stream [B, L, D] that the final norm reads (key "final") during the
    next forward pass."""
    seen: dict[str, Tensor] = {}
    norm = family_of(model).final_norm(model)
    hook = norm.register_forward_pre_hook(lambda _m, args: seen.update(final=args[0]))
    try:
        yield seen
    finally:
        hook.remove()


def written_logits(
    output: Tensor, read: Callable[[Tensor], Tensor], final: Tensor | None = None
) -> Tensor:
    """The logits [..., vocab] that an attention layer's output [..., D] writes: read by the logit
    lens alone (`read`, scale-free: a faint write reads as well as a loud one); or, given the
    residual stream that the final norm reads at the same positions (`final`), its direct effect
    on the model's logits, the rest of that stream held fixed: read(final) - read(final - output).
    """
    if final is None:
        return read(output)
    rest = (final - output).detach()
    return read(rest + output) - read(rest)


def readout_loss(
    outputs: Sequence[Tensor],
    read: Callable[[Tensor], Tensor],
    ids: Tensor,
    copyable: Tensor,
    final: Tensor | None = None,
) -> Tensor:
    """Mean over copyable positions t of the next token's cross-entropy under the logits that one
    attention layer writes at t (outputs: each attention layer's mixer output [B, L, D]; read: the
    logit lens; final: the final norm's input [B, L, D] for the direct effect, `written_logits`);
    per position the best layer counts. Zero (with a gradient) where no position is copyable."""
    if not outputs:
        raise ValueError(
            "the read-out loss needs the output of at least one attention layer: keep one (a "
            "hybrid) and capture its mixer's output (hyena_lite.capture.capture_mixers)"
        )
    if copyable.shape != ids.shape:
        raise ValueError(f"copyable {tuple(copyable.shape)} must match ids {tuple(ids.shape)}")
    right = copyable[:, :-1]
    if not right.any():
        return sum(o.sum() for o in outputs) * 0.0
    nexts = ids[:, 1:][right]
    rest = None if final is None else final[:, :-1][right]
    nll = torch.stack(
        [
            F.cross_entropy(
                written_logits(o[:, :-1][right], read, rest).float(), nexts, reduction="none"
            )
            for o in outputs
        ]
    )
    return nll.amin(0).mean()
