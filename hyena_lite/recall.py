"""Recall diagnosis: which attention layers of a teacher copy, and how well any causal LM copies.

Per layer, from the attention patterns on sequences [start, r_1..r_n, r_1..r_n] of distinct random
tokens (Olsson et al., "In-context learning and induction heads", 2022):

- previous-token score: the attention a position pays to the position right before it, averaged
  over every position after the first;
- induction score: the attention a position of the second copy pays to the position right after
  the earlier occurrence of its own token (the token to copy next), averaged over the second copy.

Each is reported per head and, per layer, for the layer's best head (the max over heads): a layer
with one induction head is a layer that copies. Copy accuracy (hyena_lite.probes.copy_curve) is
the greedy accuracy on the second copy, averaged over the lengths 32, 64 and 128.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from hyena_lite.data import ordinary_tokens
from hyena_lite.probes import copy_batch, copy_curve, model_device, start_token

COPY_LENGTHS = (32, 64, 128)


def copy_accuracy(
    model: torch.nn.Module,
    tokenizer,
    lengths: Sequence[int] = COPY_LENGTHS,
    n: int = 16,
    batch_size: int = 16,
    seed: int = 0,
) -> float:
    """The copy accuracy of any causal LM, the mean over `lengths` of copy_curve's accuracies."""
    curve = copy_curve(model, tokenizer, lengths, n=n, batch_size=batch_size, seed=seed)
    return sum(point["accuracy"] for point in curve) / len(curve)


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """Run a model's attention with the eager kernel for a while (SDPA and flash return no
    attention weights), and put its own kernel back after."""
    before = getattr(model.config, "_attn_implementation", None)
    switch = before not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(before)


@torch.inference_mode()
def attention_patterns(model: torch.nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    """The attention probabilities of every layer, [batch, heads, L, L] each, float32 on the CPU
    (under eager attention for the call)."""
    with eager_attention(model):
        out = model(input_ids=ids.to(model_device(model)), output_attentions=True)
    attentions = getattr(out, "attentions", None)
    if not attentions or any(a is None for a in attentions):
        raise ValueError(
            f"{type(model).__name__} returned no attention weights for every layer: the "
            f"previous-token and induction scores need a model whose every layer is attention "
            f"(score the teacher, not a Hyena student)"
        )
    return [a.float().cpu() for a in attentions]


def head_scores(
    model: torch.nn.Module, tokenizer, length: int = 64, n: int = 8, seed: int = 0
) -> dict[str, list]:
    """Previous-token and induction scores of every layer on n repeated random sequences of
    `length` tokens: {"previous_token", "induction"} (per layer, its best head) and
    {"previous_token_heads", "induction_heads"} (per layer, per head)."""
    if length < 2:
        raise ValueError(f"the repeated sequences need at least 2 tokens, got length={length}")
    ids, _ = copy_batch(ordinary_tokens(tokenizer), start_token(tokenizer), length, n, seed)
    positions = torch.arange(1, ids.shape[1])
    second = torch.arange(length + 1, 2 * length + 1)
    previous, induction = [], []
    for pattern in attention_patterns(model, ids):  # [n, heads, L, L]
        previous.append(pattern[:, :, positions, positions - 1].mean(dim=(0, 2)).tolist())
        induction.append(pattern[:, :, second, second - length + 1].mean(dim=(0, 2)).tolist())
    return {
        "previous_token": [max(heads) for heads in previous],
        "induction": [max(heads) for heads in induction],
        "previous_token_heads": previous,
        "induction_heads": induction,
    }


def top_layers(scores: Sequence[float], k: int) -> list[int]:
    """The k layers of largest score, in layer order (the hybrid's attention layers)."""
    if not 1 <= k <= len(scores):
        raise ValueError(f"k must be in [1, {len(scores)}] (the number of layers), got {k}")
    return sorted(sorted(range(len(scores)), key=lambda i: scores[i])[-k:])
