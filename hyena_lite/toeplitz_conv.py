"""The causal long convolution computed directly, as block-Toeplitz matrix products on tensor
cores, with the Hyena gate fused in: out = gate * ((k * u)[:L] + D u); the gate may come raw from
the in-projection, its short causal filter applied in the kernel's last stage.

Cut the signal and the output into blocks of B steps. Output block i is the sum over lags k of
T_k x_(i - k), where x_j is input block j and T_k the B x B Toeplitz matrix T_k[r, c] =
h[k B + r - c] of the filter h (zero before its first tap). Stacking output blocks as the rows of a
matrix, each lag is one matrix product: Y[i, :] += X[i - k, :] T_k^T, with M = the output blocks a
program holds, K = N = B. A program holds one channel's ROWS output blocks and walks the lags up
to its last block (blocks before a lag are masked to zero: a program spends up to ROWS lags on
products some of whose rows are zeros).

Direct convolution costs L^2 / 2 multiply-adds a channel, FFT convolution O(L log L): the direct
one is no cheaper in arithmetic, but it is matrix products (bf16 tensor cores, float32 sums) with
no FFT passes over memory, so it wins where cuFFT's passes and launches dominate. Its arithmetic
equals causal attention's at the same width for an order-2 operator (two convolutions against
QK^T and PV), so it cannot beat a flash-attention kernel by much at any length; the FFT takes
over from some length (see `supports`).

How the tiles load. A Toeplitz tile's row c reads taps lag B - c + r, r = 0 .. B - 1: contiguous
but, for most c, not on a 16-byte boundary, so Triton loads it a tap at a time (32 scalar loads and
32 shared-memory stores a thread a lag at the default tile). The plan therefore keeps 8 copies of
each filter (4 for float32), copy s shifted s taps on, with zeros around them (no masks); row c
reads copy (-c) mod 8, where its taps start on a boundary, and the tile loads as 16-byte
asynchronous copies like the signal's. The copies cost 8x the filter's memory (51 MB a step at
L = 4K, 768 channels). Both tiles are read through L1 (`.ca`): a lag's signal tile is the last
one moved a block, and a channel's whole signal and filter window are a few KB.

Compiled for Hopper without a GPU as the fast path runs it for a bf16 model
(`scripts/monarch_resources.py --toeplitz 64:64:4`, the default tile: 64-step blocks, 64 blocks a
program, 4 warps, the gate's short filter inside): 96 registers a thread, no spills, 50 KB of
shared memory, 4 programs an SM; the loop issues 129 instructions a warp a lag against 128 cycles
of tensor-core work, so issuing and products balance (the tap-at-a-time filter tile issued 174,
bound by issuing). A lag moves 16 KB of tiles from L1 for its 262K multiply-adds, 128 bytes a
cycle at the tensor cores' rate: the L1's bandwidth too. Two or four lags a product (K = 128 or
256) issued more per product, not less. At L = 4K a program holds all 64 blocks, so half its
products meet masked zeros; that puts one convolution of 768 channels near 27 µs on an H100 at
best (64 lags of 129 cycles, 768 programs over 132 SMs at 1.755 GHz), against 197 µs for the
Monarch kernel's two
(profile_monarch_h100.json). Not yet timed on a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from hyena_lite.monarch_conv import interpreted

OPERANDS = {"bf16": torch.bfloat16, "tf32": torch.float32, "ieee": torch.float32}


@triton.jit
def _product(acc, x, t, BF16: tl.constexpr, PRECISION: tl.constexpr, ROUNDED: tl.constexpr):
    """acc + x @ t, float32 sums: bf16 operands with BF16 (rounded, then exact, in Triton's
    interpreter, which multiplies bf16 wrongly), else float32 ones at PRECISION."""
    if BF16 and ROUNDED:
        x, t = x.to(tl.bfloat16).to(tl.float32), t.to(tl.bfloat16).to(tl.float32)
        return tl.dot(x, t, acc, input_precision="ieee")
    if BF16:
        return tl.dot(x.to(tl.bfloat16), t.to(tl.bfloat16), acc)
    return tl.dot(x.to(tl.float32), t.to(tl.float32), acc, input_precision=PRECISION)


@triton.jit
def _direct_kernel(
    u_ptr,  # [rows, length]: the signals, row = batch * channels + channel
    k_ptr,  # [channels, VEC, width]: each filter's shifted copies (see make_plan)
    out_ptr,  # [rows, length]
    gate_ptr,  # the gates (row at batch * gate_batch_stride + channel * length), or u_ptr
    skip_ptr,  # [channels]
    short_ptr,  # [channels, SHORT]: the gates' short filter, with SHORT > 0, else skip_ptr
    in_bias_ptr,  # [channels]: the bias added before it
    short_bias_ptr,  # [channels]: its bias (any float dtype: read as float32)
    length,
    width,
    channels,
    gate_batch_stride,
    BLOCK: tl.constexpr,
    ROWS: tl.constexpr,
    VEC: tl.constexpr,
    HAS_GATE: tl.constexpr,
    SHORT: tl.constexpr,
    BF16: tl.constexpr,
    PRECISION: tl.constexpr,
    ROUNDED: tl.constexpr,
):
    row = tl.program_id(0)
    tile = tl.program_id(1)
    channel = row % channels
    blocks = tile * ROWS + tl.arange(0, ROWS)  # the output blocks this program holds
    step = tl.arange(0, BLOCK)  # a step within a block: input's c, output's r
    signal = u_ptr + row.to(tl.int64) * length
    # VEC copies of the filter, copy s shifted s taps on: row c of a Toeplitz tile reads copy
    # (-c) mod VEC, where its taps start on a multiple of VEC (vector loads)
    shift = (VEC - step % VEC) % VEC
    first = shift[:, None] * width + BLOCK + step[None, :] - step[:, None] - shift[:, None]
    first = tl.max_contiguous(tl.multiple_of(first, [1, VEC]), [1, BLOCK])
    acc = tl.zeros((ROWS, BLOCK), dtype=tl.float32)
    # lag 0: X is the tile's own blocks, T_0 the filter's first taps; each lag after moves X's
    # rows one block back and T one block on
    xs = signal + blocks[:, None] * BLOCK + step[None, :]  # X[i - lag, c]
    ts = k_ptr + channel.to(tl.int64) * VEC * width + first  # T_lag^T[c, r] = h[lag B + r - c]
    source = blocks[:, None] * BLOCK + step[None, :]  # X's steps at lag 0
    for lag in range(0, tile * ROWS + 1):  # every row's block at or after the lag
        x = tl.load(xs, mask=source < length + lag * BLOCK, other=0.0, cache_modifier=".ca")
        acc = _product(acc, x, tl.load(ts, cache_modifier=".ca"), BF16, PRECISION, ROUNDED)
        xs -= BLOCK
        ts += BLOCK
    for lag in range(tile * ROWS + 1, tl.minimum(tile * ROWS + ROWS, tl.cdiv(length, BLOCK))):
        before = (blocks[:, None] >= lag) & (source < length + lag * BLOCK)
        x = tl.load(xs, mask=before, other=0.0, cache_modifier=".ca")
        acc = _product(acc, x, tl.load(ts, cache_modifier=".ca"), BF16, PRECISION, ROUNDED)
        xs -= BLOCK
        ts += BLOCK
    kept = source < length
    x = tl.load(signal + source, mask=kept, other=0.0).to(tl.float32)
    y = acc + tl.load(skip_ptr + channel).to(tl.float32) * x
    if HAS_GATE:
        gates = gate_ptr + (row // channels).to(tl.int64) * gate_batch_stride
        gates += channel.to(tl.int64) * length
        if SHORT > 0:  # the gate from the in-projection: its short causal filter here
            bias = tl.load(short_bias_ptr + channel).to(tl.float32)
            gate = tl.zeros((ROWS, BLOCK), dtype=tl.float32) + bias
            in_bias = tl.load(in_bias_ptr + channel).to(tl.float32)
            for tap in tl.static_range(SHORT):  # tap j sees step t - (SHORT - 1 - j)
                at = source - (SHORT - 1 - tap)
                seen = (at >= 0) & kept
                z = tl.load(gates + at, mask=seen, other=0.0).to(tl.float32)
                weight = tl.load(short_ptr + channel * SHORT + tap).to(tl.float32)
                gate += weight * tl.where(seen, z + in_bias, 0.0)
            y *= gate
        else:
            y *= tl.load(gates + source, mask=kept, other=0.0).to(tl.float32)
    tl.store(out_ptr + row.to(tl.int64) * length + source, y, mask=kept)


MAX_LENGTH = 8192  # direct work grows as L^2: beyond 8K the FFT's L log L wins (not yet timed)


def supports(length: int) -> bool:
    """Whether the fast path runs signals of `length` steps through this kernel (up to
    MAX_LENGTH)."""
    return 0 < length <= MAX_LENGTH


def make_plan(
    k: Tensor, length: int, precision: str = "bf16", block: int = 64, rows: int = 64
) -> dict:
    """The filters k [C, taps] as the kernel reads them for signals of `length` steps, with the
    tile shape: `block` steps a block (K = N of each product), `rows` output blocks a program (M).

    The filters, in the products' dtype ("bf16": operands rounded to bf16, float32 sums; "tf32" or
    "ieee": float32 operands), as [C, copies, width]: the first `length` taps with `block` zeros
    before them and zeros up to a whole number of blocks after (the Toeplitz tiles need no masks),
    in as many copies as a 16-byte load holds taps (8 for bf16), copy s shifted s taps on (every
    row of a tile then starts on a 16-byte boundary in one of them)."""
    if precision not in OPERANDS:
        raise ValueError(f"precision must be one of {sorted(OPERANDS)}, got {precision!r}")
    if block < 16 or rows < 16 or block & (block - 1) or rows & (rows - 1):
        raise ValueError(f"block and rows must be powers of two >= 16, got {block} and {rows}")
    channels, taps = k.shape
    width = block + triton.cdiv(length, block) * block
    vec = 16 // OPERANDS[precision].itemsize  # taps a 16-byte load holds
    padded = torch.zeros(channels, width + vec, dtype=OPERANDS[precision], device=k.device)
    used = min(taps, length)
    padded[:, block : block + used] = k.detach()[:, :used]
    copies = torch.stack([padded[:, shift : shift + width] for shift in range(vec)], 1)
    return {
        "kernel": "toeplitz",
        "filters": copies.contiguous(),
        "length": length,
        "precision": precision,
        "block": block,
        "rows": rows,
    }


def causal_conv(
    u: Tensor,
    plan: dict,
    skip: Tensor,
    gate: Tensor | None = None,
    out_dtype: torch.dtype = torch.float32,
    num_warps: int = 4,
    gate_filter: tuple[Tensor, Tensor, Tensor] | None = None,
) -> Tensor:
    """gate * ((k * u)[:L] + D u) in `out_dtype`, [B, C, L], for u [B, C, L], `make_plan(k, L)`,
    the skip D [C] and a gate [B, C, L] (any batch stride, contiguous rows; None: no gate). With
    `gate_filter` = (weight [C, 1, K], in_bias [C], bias [C]), `gate` is the in-projection's rows
    and the kernel applies the short causal filter, `longconv.short_conv(gate + in_bias, weight,
    bias)` in float32, as it reads them (no pass of its own)."""
    batch, channels, length = u.shape
    filters = plan["filters"]
    if length != plan["length"] or filters.shape[0] != channels:
        raise ValueError(
            f"the plan is for {filters.shape[0]} channels of {plan['length']} steps, "
            f"got {channels} channels of {length}: make_plan(k, {length})"
        )
    if gate is not None and (gate.shape != u.shape or gate.stride()[1:] != (length, 1)):
        raise ValueError(
            f"the gate must have u's shape {tuple(u.shape)} with contiguous rows, got shape "
            f"{tuple(gate.shape)} and strides {gate.stride()}"
        )
    block, rows, precision = plan["block"], plan["rows"], plan["precision"]
    short_filter = [skip] * 3 if gate_filter is None else gate_filter  # no casts: one graph node
    signals = u.contiguous().reshape(batch * channels, length)
    out = torch.empty(signals.shape, dtype=out_dtype, device=u.device)
    tiles = triton.cdiv(triton.cdiv(length, block), rows)
    _direct_kernel[(batch * channels, tiles)](
        signals,
        filters,
        out,
        signals if gate is None else gate,
        skip.contiguous(),
        *(t.contiguous() for t in short_filter),
        length,
        filters.shape[2],
        channels,
        0 if gate is None else gate.stride(0),
        BLOCK=block,
        ROWS=rows,
        VEC=filters.shape[1],
        HAS_GATE=gate is not None,
        SHORT=0 if gate_filter is None else gate_filter[0].shape[-1],
        BF16=precision == "bf16",
        PRECISION="tf32" if precision == "bf16" else precision,
        ROUNDED=interpreted(),
        num_warps=num_warps,
    )
    return out.reshape(batch, channels, length)
