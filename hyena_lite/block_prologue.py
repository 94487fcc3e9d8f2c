"""What a Triton kernel of a decoding step needs to start from the residual stream itself: the
block's residual add and layer norm as a prologue, so that no element-wise kernel sits between
two Triton kernels of a step.

A GPT-2 block at a step is `h = base + delta; x = norm(h)`, where base is the residual stream
before the previous sub-layer and delta that sub-layer's output. When the previous sub-layer is a
Triton kernel that sums its partial products into a float32 accumulator (atomically, see
`hyena_lite.modal_kernel` and `hyena_lite.mlp_kernel`), delta is that accumulator plus its bias,
rounded to the model's dtype as the plain module returns it. Every program of the next kernel
computes `h` and the norm's statistics itself (a vector of the model's width, read from L2), and
one program per sequence writes `h` out, the residual stream the sub-layer after it adds to.
Its end is `emit`: the programs' products added into one accumulator, the next kernel's delta.

`NormInput` carries the pointers; the `@triton.jit` helpers compute the same numbers as
`base + (delta + bias).to(dtype)` followed by `nn.LayerNorm` in the model's dtype, in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import triton
import triton.language as tl
from torch import Tensor, nn


@dataclass
class NormInput:
    """A sub-layer's input as its kernel computes it: `norm(base + (delta + delta_bias).to(dtype))`
    for rows [B, D], with `stream` [B, D] receiving `base + ...` (the residual stream after the
    previous sub-layer). `delta` may be float32 (an accumulator) or the model's dtype."""

    base: Tensor
    delta: Tensor
    delta_bias: Tensor
    norm: nn.LayerNorm
    stream: Tensor

    def arguments(self) -> tuple[object, ...]:
        """The kernel arguments, in the order the kernels take them (rows read as contiguous)."""
        norm, shape = self.norm, tuple(self.base.shape)
        if len(shape) != 2 or self.delta.shape != shape or self.stream.shape != shape:
            raise ValueError(
                f"base, delta and stream must share one shape [batch, width]; got {shape}, "
                f"{tuple(self.delta.shape)} and {tuple(self.stream.shape)}"
            )
        if not self.stream.is_contiguous():
            raise ValueError("stream is written in place: pass a contiguous tensor")
        return (
            self.base.contiguous(),
            self.delta.contiguous(),
            self.delta_bias,
            norm.weight,
            norm.bias,
            self.stream,
            float(norm.eps),
        )


@triton.jit
def residual_of(base_ptr, delta_ptr, delta_bias_ptr, row, k, mask, rounded):
    """h[k] = base + (delta + delta_bias).to(rounded), rounded, as float32 (zero where masked)."""
    base = tl.load(base_ptr + row + k, mask=mask, other=0.0).to(tl.float32)
    delta = tl.load(delta_ptr + row + k, mask=mask, other=0.0).to(tl.float32)
    bias = tl.load(delta_bias_ptr + k, mask=mask, other=0.0).to(tl.float32)
    delta = (delta + bias).to(rounded).to(tl.float32)
    return (base + delta).to(rounded).to(tl.float32)


@triton.jit
def norm_statistics(base_ptr, delta_ptr, delta_bias_ptr, row, D, eps, rounded, TILE: tl.constexpr):
    """The layer norm's mean and reciprocal standard deviation of h over its D features, tile by
    tile (two passes: the mean, then the squared deviations from it)."""
    total = tl.zeros([TILE], dtype=tl.float32)
    for start in range(0, D, TILE):
        k = start + tl.arange(0, TILE)
        total += residual_of(base_ptr, delta_ptr, delta_bias_ptr, row, k, k < D, rounded)
    mean = tl.sum(total, axis=0) / D
    squares = tl.zeros([TILE], dtype=tl.float32)
    for start in range(0, D, TILE):
        k = start + tl.arange(0, TILE)
        h = residual_of(base_ptr, delta_ptr, delta_bias_ptr, row, k, k < D, rounded)
        deviation = tl.where(k < D, h - mean, 0.0)
        squares += deviation * deviation
    return mean, 1.0 / tl.sqrt(tl.sum(squares, axis=0) / D + eps)


@triton.jit
def normed(
    base_ptr,
    delta_ptr,
    delta_bias_ptr,
    norm_w_ptr,
    norm_b_ptr,
    row,
    k,
    mask,
    mean,
    rstd,
    rounded,
):
    """The norm's output at features k (rounded to the model's dtype, as float32; zero where
    masked)."""
    h = residual_of(base_ptr, delta_ptr, delta_bias_ptr, row, k, mask, rounded)
    w = tl.load(norm_w_ptr + k, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(norm_b_ptr + k, mask=mask, other=0.0).to(tl.float32)
    return tl.where(mask, ((h - mean) * rstd * w + b).to(rounded).to(tl.float32), 0.0)


@triton.jit
def write_stream(
    base_ptr, delta_ptr, delta_bias_ptr, stream_ptr, row, D, rounded, TILE: tl.constexpr
):
    """Store h [D] of one sequence, the residual stream the next residual add starts from."""
    for start in range(0, D, TILE):
        k = start + tl.arange(0, TILE)
        h = residual_of(base_ptr, delta_ptr, delta_bias_ptr, row, k, k < D, rounded)
        tl.store(stream_ptr + row + k, h.to(rounded), mask=k < D)


@triton.jit
def start_row(
    base_ptr,
    delta_ptr,
    delta_bias_ptr,
    stream_ptr,
    row,
    D,
    eps,
    rounded,
    write,
    NORM: tl.constexpr,
    TILE: tl.constexpr,
):
    """A kernel's start on one sequence's row: with NORM, the norm's mean and reciprocal standard
    deviation of h, h written to stream where `write` (one program per sequence); else (0, 1),
    unused."""
    mean, rstd = 0.0, 1.0
    if NORM:
        mean, rstd = norm_statistics(
            base_ptr, delta_ptr, delta_bias_ptr, row, D, eps, rounded, TILE
        )
        if write:
            write_stream(base_ptr, delta_ptr, delta_bias_ptr, stream_ptr, row, D, rounded, TILE)
    return mean, rstd


@triton.jit
def input_tile(
    x_ptr,
    base_ptr,
    delta_ptr,
    delta_bias_ptr,
    norm_w_ptr,
    norm_b_ptr,
    row,
    k,
    mask,
    mean,
    rstd,
    rounded,
    NORM: tl.constexpr,
):
    """A kernel's input at features k of a row, as float32: the norm's output (NORM, from
    `start_row`'s statistics) or the row of x as it is."""
    if NORM:
        x = normed(
            base_ptr,
            delta_ptr,
            delta_bias_ptr,
            norm_w_ptr,
            norm_b_ptr,
            row,
            k,
            mask,
            mean,
            rstd,
            rounded,
        )
    else:
        x = tl.load(x_ptr + row + k, mask=mask, other=0.0).to(tl.float32)
    return x


@triton.jit
def emit(pointers, values, mask, ATOMIC: tl.constexpr):
    """A kernel's products: added into an accumulator shared by its programs (ATOMIC; the sums
    then come in varying order), or stored in a row of the program's own."""
    if ATOMIC:
        tl.atomic_add(pointers, values, mask=mask, sem="relaxed")
    else:
        tl.store(pointers, values, mask=mask)


@triton.jit
def prefetch(pointers):
    """Ask for the cache lines at `pointers` to be brought into L2 (PTX prefetch.global.L2) and go
    on without waiting: what a programmatic dependent reads before it may read its inputs. GPU
    only (Triton's interpreter runs no PTX)."""
    tl.inline_asm_elementwise(
        "prefetch.global.L2 [$1]; mov.u32 $0, 0;",
        "=r,l",
        [pointers],
        dtype=tl.int32,
        is_pure=False,
        pack=1,
    )


def tile_of(width: int) -> int:
    """The prologue's tile: the whole width where it is at most 1,024 (rounded up to a power of
    two), else 1,024."""
    return min(1024, triton.next_power_of_2(width))
