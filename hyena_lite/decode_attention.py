"""One new query's attention over a static key-value cache, as a teacher's decoding step needs
it: PyTorch's scaled dot-product attention with the mask `key <= position` ("sdpa", cuDNN's kernel
on a Hopper GPU), or flash decoding, a Triton kernel split over the keys ("split",
`hyena_lite.split_attention`).

At a decoding step the teacher's attention reads every cached key and value once: at 8K positions
GPT-2's twelve heads hold 25 MB a layer, about 8 us at an H100's copy bandwidth. A step has one
query a head, so a kernel with one program a head (B x 12 programs) leaves most of the GPU idle;
the split kernel cuts the cache into chunks of keys along the sequence and gives every (sequence,
head, chunk) a program (Dao et al., "Flash-Decoding for long-context inference", 2023), with the
chunk chosen from the cache's length so that the GPU gets several programs a multiprocessor
(`split_attention.keys_per_program`). Measured on an H100 (`scripts/decode_attention_speed.py`):
faster than cuDNN's at 1K (7.8 against 11.0 us a layer), level at 8K (18.5), slower at 32K (45.5
against 43.3). PyTorch's FlexAttention, whose compiled kernel for short queries splits the keys
too, was slower than both.
This module needs no Triton; the split kernel is imported when asked for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

ATTENTIONS = ("sdpa", "split")


def masked_attention(
    q: Tensor, keys: Tensor, values: Tensor, position: Tensor, scale: float
) -> Tensor:
    """PyTorch's scaled dot-product attention of q [B, H, D] over keys 0 .. position (a mask)."""
    visible = torch.arange(keys.shape[2], device=keys.device) <= position
    out = F.scaled_dot_product_attention(
        q[:, :, None], keys, values, attn_mask=visible.view(1, 1, 1, -1), scale=scale
    )
    return out[:, :, 0]


def attend(
    method: str,
    q: Tensor,
    keys: Tensor,
    values: Tensor,
    position: Tensor,
    scale: float,
    arrivals: Tensor | None = None,
) -> Tensor:
    """q [B, H, D] attending over the cache's keys 0 .. position by `method` (in ATTENTIONS):
    [B, H, D], the split kernel with `keys_per_program`'s chunks; `arrivals`: its count of
    finished chunks (`split_attention.split_attention`)."""
    if method == "split":
        from hyena_lite.split_attention import keys_per_program, split_attention

        chunk = keys_per_program(keys.shape[0] * keys.shape[1], keys.shape[2], keys.device)
        return split_attention(q, keys, values, position, scale, chunk, arrivals)
    if method == "sdpa":
        return masked_attention(q, keys, values, position, scale)
    raise ValueError(f"attention must be one of {ATTENTIONS}, got {method!r}")
