"""Flash decoding in Triton: one query a head attending over a static key-value cache, the keys
split into chunks with a program each (`hyena_lite.decode_attention` says why and when).

A program reads its chunk's keys up to the newest position (later ones it skips: they are not
read), keeps the running maximum and sum of a softmax over them (online softmax, as
FlashAttention), and writes its unnormalised output with the two numbers; the last of a row's
programs to finish (an atomic count) combines the row's chunks, so the whole attention is one
launch. Numbers as
`F.scaled_dot_product_attention` with the mask `key <= position` computes them, in float32 from
the model's dtype; tests compare the two on a GPU and in Triton's interpreter.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from hyena_lite.modal_kernel import per_program

BLOCK_KEYS = 64  # keys a program reads at once (a [64, head_dim] tile)
PROGRAMS_PER_PROCESSOR = 4  # keys_per_program aims at this many programs a multiprocessor


def keys_per_program(batch_heads: int, length: int, device: torch.device) -> int:
    """Keys a program reads (`modal_kernel.per_program`, BLOCK_KEYS to 1,024): the fewest chunks
    that still give every multiprocessor PROGRAMS_PER_PROCESSOR programs for `batch_heads` query
    rows over a cache of `length` positions."""
    return per_program(batch_heads, length, device, 1024, BLOCK_KEYS, PROGRAMS_PER_PROCESSOR)


@triton.jit
def split_attention_kernel(
    q_ptr,  # [B, H, D] one query a head (rows of strides q_batch, q_head), model dtype
    k_ptr,  # [B, H, L, D] the cache's keys, contiguous
    v_ptr,  # [B, H, L, D] its values
    position_ptr,  # the newest position (keys 0 .. position are visible), an integer tensor
    out_ptr,  # [B * H, chunks, D] float32: each chunk's output, not yet divided by its sum
    max_ptr,  # [B * H, chunks] float32: each chunk's largest score (log2 units), -inf if empty
    sum_ptr,  # [B * H, chunks] float32: each chunk's sum of 2^(score - max)
    arrivals_ptr,  # [B * H] int32, zero: chunks done a row (the last one sets it back to zero)
    result_ptr,  # [B * H, D] the attention's output, model dtype
    q_batch,
    q_head,
    L,
    scale,  # the softmax scale times log2(e): scores in log2 units, for exp2
    H: tl.constexpr,
    D: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    COMBINE: tl.constexpr,  # chunks the last program combines at once
):
    row, chunk = tl.program_id(0), tl.program_id(1)
    chunks = tl.num_programs(1)
    dims = tl.arange(0, D)
    q = tl.load(q_ptr + (row // H) * q_batch + (row % H) * q_head + dims).to(tl.float32)
    q = (q * scale).to(tl.float32)  # scale may come as float64 (torch.compile passes doubles)
    start = chunk * CHUNK
    end = tl.minimum(start + CHUNK, tl.load(position_ptr).to(tl.int32) + 1)
    top = -float("inf")
    total = 0.0
    acc = tl.zeros([D], dtype=tl.float32)
    cache = row.to(tl.int64) * L * D
    for first in range(start, end, BLOCK):  # empty where the chunk lies past the position
        keys = first + tl.arange(0, BLOCK)
        visible = keys < end
        offsets = cache + keys[:, None] * D + dims[None, :]
        k = tl.load(k_ptr + offsets, mask=visible[:, None], other=0.0)
        v = tl.load(v_ptr + offsets, mask=visible[:, None], other=0.0)
        scores = tl.sum(k.to(tl.float32) * q[None, :], axis=1)
        scores = tl.where(visible, scores, -float("inf"))
        new_top = tl.maximum(top, tl.max(scores, axis=0))  # finite: a block has a visible key
        weights = tl.exp2(scores - new_top)
        shrink = tl.exp2(top - new_top)
        total = total * shrink + tl.sum(weights, axis=0)
        acc = acc * shrink + tl.sum(weights[:, None] * v.to(tl.float32), axis=0)
        top = new_top
    slot = row * chunks + chunk
    tl.store(out_ptr + slot * D + dims, acc)
    tl.store(max_ptr + slot, top)
    tl.store(sum_ptr + slot, total)
    tl.debug_barrier()  # every thread's stores issued before the arrival is counted
    if tl.atomic_add(arrivals_ptr + row, 1, sem="acq_rel") == chunks - 1:  # the row's last
        combine_chunks(out_ptr, max_ptr, sum_ptr, result_ptr, row, chunks, D, COMBINE)
        tl.store(arrivals_ptr + row, 0)  # ready for the next step


@triton.jit
def combine_chunks(
    out_ptr, max_ptr, sum_ptr, result_ptr, row, chunks, D: tl.constexpr, COMBINE: tl.constexpr
):
    """A row's output from its chunks': each weighed by 2^(its max - the largest max), summed, and
    divided by the weighed sums (read past L1: other programs wrote them)."""
    dims, part = tl.arange(0, D), tl.arange(0, COMBINE)
    largest = -float("inf")
    for first in range(0, chunks, COMBINE):
        slots = first + part
        tops = tl.load(
            max_ptr + row * chunks + slots,
            mask=slots < chunks,
            other=-float("inf"),
            cache_modifier=".cg",
        )
        largest = tl.maximum(largest, tl.max(tops, axis=0))
    acc = tl.zeros([D], dtype=tl.float32)
    total = 0.0
    for first in range(0, chunks, COMBINE):
        slots = first + part
        inside = slots < chunks
        tops = tl.load(
            max_ptr + row * chunks + slots, mask=inside, other=-float("inf"), cache_modifier=".cg"
        )
        weights = tl.exp2(tops - largest)  # 0 for empty chunks and those past the end
        sums = tl.load(sum_ptr + row * chunks + slots, mask=inside, other=0.0, cache_modifier=".cg")
        outs = tl.load(
            out_ptr + (row * chunks + slots)[:, None] * D + dims[None, :],
            mask=inside[:, None],
            other=0.0,
            cache_modifier=".cg",
        )
        total += tl.sum(weights * sums, axis=0)
        acc += tl.sum(weights[:, None] * outs, axis=0)
    tl.store(result_ptr + row * D + dims, (acc / total).to(result_ptr.dtype.element_ty))


def split_attention(
    q: Tensor,
    keys: Tensor,
    values: Tensor,
    position: Tensor,
    scale: float,
    chunk: int,
    arrivals: Tensor | None = None,
) -> Tensor:
    """softmax(q k^T * scale) v over keys 0 .. `position` of a static cache, for one query a head:
    q [B, H, D], keys and values [B, H, L, D] (contiguous), position a one-element integer tensor
    on their device; returns [B, H, D] in q's dtype. `chunk`: keys a program reads (a multiple of
    BLOCK_KEYS; `keys_per_program` picks one). The last program of a row to finish combines the
    row's chunks, counted in `arrivals` (int32 [B * H], zero, and zero again after the call: pass
    one that lives as long as the caller to spare a fill a call)."""
    batch, heads, length, dim = keys.shape
    if q.shape != (batch, heads, dim) or values.shape != keys.shape:
        raise ValueError(
            f"q must be [batch, heads, head_dim] and keys, values [batch, heads, length, head_dim] "
            f"with the same batch, heads and head_dim; got {tuple(q.shape)}, "
            f"{tuple(keys.shape)} and {tuple(values.shape)}"
        )
    if chunk % BLOCK_KEYS or dim & (dim - 1):
        raise ValueError(
            f"chunk must be a multiple of {BLOCK_KEYS} and head_dim a power of two; got "
            f"chunk={chunk}, head_dim={dim}"
        )
    if not (keys.is_contiguous() and values.is_contiguous()) or q.stride(2) != 1:
        raise ValueError(
            "keys and values must be contiguous [batch, heads, length, head_dim], and q's rows "
            "contiguous (stride 1 along head_dim)"
        )
    chunks, rows, device = -(-length // chunk), batch * heads, q.device
    if arrivals is None:
        arrivals = torch.zeros(rows, dtype=torch.int32, device=device)
    elif arrivals.shape != (rows,) or arrivals.dtype != torch.int32:
        raise ValueError(f"arrivals must be int32 zeros of shape [{rows}] (batch x heads)")
    out = torch.empty(rows, chunks, dim, dtype=torch.float32, device=device)
    tops = torch.empty(rows, chunks, dtype=torch.float32, device=device)
    totals = torch.empty(rows, chunks, dtype=torch.float32, device=device)
    result = torch.empty(batch, heads, dim, dtype=q.dtype, device=device)
    split_attention_kernel[(rows, chunks)](
        q,
        keys,
        values,
        position,
        out,
        tops,
        totals,
        arrivals,
        result,
        q.stride(0),
        q.stride(1),
        length,
        scale * 1.4426950408889634,
        H=heads,
        D=dim,
        CHUNK=chunk,
        BLOCK=BLOCK_KEYS,
        COMBINE=32,
        num_warps=2 if chunk <= BLOCK_KEYS else 4,
    )
    return result
