"""The causal long convolution computed directly, as block-Toeplitz matrix products on tensor
cores, with the Hyena gate fused in: out = gate * ((k * u)[:L] + D u).

Cut the signal and the output into blocks of B steps. Output block i is the sum over lags k of
T_k x_(i - k), where x_j is input block j and T_k the B x B Toeplitz matrix T_k[r, c] =
h[k B + r - c] of the filter h (zero before its first tap). Stacking output blocks as the rows of a
matrix, each lag is one matrix product: Y[i, :] += X[i - k, :] T_k^T, with M = the output blocks a
program holds, K = N = B. A program holds one channel's ROWS output blocks and walks the lags up
to its last block (blocks before a lag are masked to zero, so a program wastes at most ROWS / 2
lags of products on them).

Direct convolution costs L^2 / 2 multiply-adds a channel, FFT convolution O(L log L): the direct
one is no cheaper in arithmetic, but it is matrix products (bf16 tensor cores, float32 sums) with
no FFT passes over memory, so it wins where cuFFT's passes and launches dominate. Its arithmetic
equals causal attention's at the same width for an order-2 operator (two convolutions against
QK^T and PV), so it cannot beat a flash-attention kernel by much at any length; the FFT takes
over from some length (see `supports`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from hyena_lite.monarch_conv import interpreted

OPERANDS = {"bf16": torch.bfloat16, "tf32": torch.float32, "ieee": torch.float32}


@triton.jit
def _direct_kernel(
    u_ptr,  # [rows, length]: the signals, row = batch * channels + channel
    k_ptr,  # [channels, taps]: the filters, in the operands' dtype
    out_ptr,  # [rows, length]
    gate_ptr,  # the gates (row at batch * gate_batch_stride + channel * length), or u_ptr
    skip_ptr,  # [channels], float32
    length,
    taps,
    channels,
    gate_batch_stride,
    BLOCK: tl.constexpr,
    ROWS: tl.constexpr,
    HAS_GATE: tl.constexpr,
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
    filt = k_ptr + channel.to(tl.int64) * taps
    acc = tl.zeros((ROWS, BLOCK), dtype=tl.float32)
    lags = tl.minimum(tile * ROWS + ROWS, tl.cdiv(length, BLOCK))
    for lag in range(0, lags):
        source = (blocks[:, None] - lag) * BLOCK + step[None, :]  # X[i - lag, c]
        x = tl.load(signal + source, mask=(source >= 0) & (source < length), other=0.0)
        tap = lag * BLOCK + step[None, :] - step[:, None]  # T_lag^T[c, r] = h[lag B + r - c]
        t = tl.load(filt + tap, mask=(tap >= 0) & (tap < taps), other=0.0)
        if BF16 and ROUNDED:  # Triton's interpreter multiplies bf16 wrongly: round, then ieee
            x, t = x.to(tl.bfloat16).to(tl.float32), t.to(tl.bfloat16).to(tl.float32)
            acc = tl.dot(x, t, acc, input_precision="ieee")
        elif BF16:
            acc = tl.dot(x.to(tl.bfloat16), t.to(tl.bfloat16), acc)
        else:
            acc = tl.dot(x.to(tl.float32), t.to(tl.float32), acc, input_precision=PRECISION)
    position = blocks[:, None] * BLOCK + step[None, :]
    kept = position < length
    x = tl.load(signal + position, mask=kept, other=0.0).to(tl.float32)
    y = acc + tl.load(skip_ptr + channel) * x
    if HAS_GATE:
        start = (row // channels).to(tl.int64) * gate_batch_stride + channel.to(tl.int64) * length
        y *= tl.load(gate_ptr + start + position, mask=kept, other=0.0).to(tl.float32)
    tl.store(out_ptr + row.to(tl.int64) * length + position, y, mask=kept)


def filters(k: Tensor, precision: str = "bf16") -> Tensor:
    """The filters k [C, taps] as the kernel reads them: contiguous, in the products' dtype."""
    if precision not in OPERANDS:
        raise ValueError(f"precision must be one of {sorted(OPERANDS)}, got {precision!r}")
    return k.detach().to(OPERANDS[precision]).contiguous()


def causal_conv(
    u: Tensor,
    k: Tensor,
    skip: Tensor,
    gate: Tensor | None = None,
    precision: str = "bf16",
    out_dtype: torch.dtype = torch.float32,
    block: int = 32,
    rows: int = 64,
    num_warps: int = 4,
) -> Tensor:
    """gate * ((k * u)[:L] + D u) in `out_dtype`, [B, C, L], for u [B, C, L], filters k [C, taps]
    (`filters(k, precision)` saves the cast per call), the skip D [C] and a gate [B, C, L] (any
    batch stride, contiguous rows; None: no gate). `precision`: "bf16" (operands rounded to bf16,
    float32 sums), "tf32" or "ieee" (float32 operands). `block` steps a block (K = N of each
    product), `rows` output blocks a program (M)."""
    batch, channels, length = u.shape
    if k.ndim != 2 or k.shape[0] != channels:
        raise ValueError(f"the filters must be [{channels}, taps], got {tuple(k.shape)}")
    if gate is not None and (gate.shape != u.shape or gate.stride()[1:] != (length, 1)):
        raise ValueError(
            f"the gate must have u's shape {tuple(u.shape)} with contiguous rows, got shape "
            f"{tuple(gate.shape)} and strides {gate.stride()}"
        )
    k = filters(k, precision)
    signals = u.contiguous().reshape(batch * channels, length)
    out = torch.empty(signals.shape, dtype=out_dtype, device=u.device)
    tiles = triton.cdiv(triton.cdiv(length, block), rows)
    _direct_kernel[(batch * channels, tiles)](
        signals,
        k,
        out,
        signals if gate is None else gate,
        skip.float().contiguous(),
        length,
        k.shape[1],
        channels,
        0 if gate is None else gate.stride(0),
        BLOCK=block,
        ROWS=rows,
        HAS_GATE=gate is not None,
        BF16=precision == "bf16",
        PRECISION="tf32" if precision == "bf16" else precision,
        ROUNDED=interpreted(),
        num_warps=num_warps,
    )
    return out.reshape(batch, channels, length)
