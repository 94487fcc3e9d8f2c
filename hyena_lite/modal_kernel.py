"""The Hyena operator's recurrent decoding step as one Triton kernel.

`ModalStep` (hyena_lite.fastdecode) writes the step as PyTorch element-wise work that
torch.compile fuses into about six kernels per layer on a GPU (short filter, FIR head, modes, the
gating chain, the state updates); at batch 1 each costs a launch slot of a few microseconds in the
CUDA graph, more than its arithmetic. Here the same arithmetic runs as one kernel: a program takes
one sequence and a block of channels, reads their projected inputs, short-filter window, FIR inputs
and modal states once, runs every stage of the gating chain in registers, and writes the states
back in place. With `in_proj=True` the kernel also computes its channels' share of the input
projection (a matrix-vector product), so that a layer's mixer is one launch between the block's
norm and the out-projection; with `out_proj=True` as well, each program also multiplies its
channels' outputs by their columns of the out-projection and writes that partial product (float32)
to a row of its own, so a layer's whole mixer, both projections included, is one launch: the sum
over the rows (deterministic, no atomics) is element-wise work that torch.compile fuses into the
residual add after it.

At batch 1 a program per 32 channels gives only 24 programs at width 768, a fifth of an H100's
132 multiprocessors, while the projections' weights (4.7 MB a layer in bfloat16) want them all:
`channels_per_program` takes fewer channels per program until the grid fills the GPU.

ModalStep stays the reference (and the CPU path); tests compare the two on a GPU, and in Triton's
interpreter on a CPU (TRITON_INTERPRET=1, set before triton is imported; it rounds float32 to
bfloat16 toward zero, where GPUs round to nearest, so only float32 is compared there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import triton
import triton.language as tl
from torch import Tensor

if TYPE_CHECKING:
    from hyena_lite.fastdecode import ModalStep

MAX_CHANNELS, MIN_CHANNELS = 32, 8  # channels per program (see channels_per_program)
BLOCK_INPUTS = 128  # input features per tile of the fused input projection
BLOCK_OUTPUTS = 128  # output features per tile of the fused out-projection


def channels_per_program(batch: int, width: int, device: torch.device) -> int:
    """Channels per program: the most (up to MAX_CHANNELS, a power of two) that still give every
    multiprocessor of the GPU two programs, and no fewer than MIN_CHANNELS (8 at batch 1 on an
    H100: 96 programs at width 768; 16 at batch 8, 32 at batch 16)."""
    processors = (
        torch.cuda.get_device_properties(device).multi_processor_count
        if device.type == "cuda"
        else 1
    )
    block = MAX_CHANNELS
    while block > MIN_CHANNELS and batch * -(-width // block) < 2 * processors:
        block //= 2
    return block


@triton.jit
def projected(
    p_ptr, u_ptr, w_ptr, bias_ptr, b, c, live, width, D, rounded,
    IN_PROJ: tl.constexpr, BLOCK_IN: tl.constexpr,
):
    """Channels c of the projected input of sequence b, in float32 after rounding to the model's
    dtype (what the plain step's Linear returns): read from p, or computed from u."""
    if IN_PROJ:
        acc = tl.load(bias_ptr + c, mask=live, other=0.0).to(tl.float32)
        total = tl.zeros_like(acc)
        for start in range(0, D, BLOCK_IN):
            k = start + tl.arange(0, BLOCK_IN)
            inside = k < D
            x = tl.load(u_ptr + b * D + k, mask=inside, other=0.0).to(tl.float32)
            w = tl.load(
                w_ptr + c[:, None] * D + k[None, :],
                mask=live[:, None] & inside[None, :],
                other=0.0,
            ).to(tl.float32)
            total += tl.sum(w * x[None, :], axis=1)
        return (total + acc).to(rounded).to(tl.float32)
    return tl.load(p_ptr + b * width + c, mask=live, other=0.0).to(tl.float32)


@triton.jit
def short_filter(p, window_ptr, conv_w_ptr, conv_b_ptr, b, c, live, width, rounded,
                 K: tl.constexpr):
    """Channels c's short-filter output for the new projected input p (rounded to the model's
    dtype, as the plain step does), their window moved one place on with p at its end. Each
    channel's taps stay with one thread, so no thread overwrites a tap another has to read."""
    row = window_ptr + (b * width + c) * K
    z = tl.load(conv_b_ptr + c, mask=live, other=0.0)
    z += p * tl.load(conv_w_ptr + c * K + (K - 1), mask=live, other=0.0)
    for k in tl.static_range(K - 1):
        older = tl.load(row + k + 1, mask=live, other=0.0)
        z += older * tl.load(conv_w_ptr + c * K + k, mask=live, other=0.0)
        tl.store(row + k, older, mask=live)
    tl.store(row + (K - 1), p, mask=live)
    return z.to(rounded).to(tl.float32)


@triton.jit
def modal_step_kernel(
    p_ptr, u_ptr, w_in_ptr, b_in_ptr,  # [B, (N+1)D] projected input, or [B, D] input + Linear
    out_ptr,  # [B, D] gated output, model dtype; or [programs per sequence, B, D] float32
    w_out_ptr,  # [D, D] out-projection (read with OUT_PROJ)
    window_ptr, conv_w_ptr, conv_b_ptr,  # [B, (N + 1) D, K], [(N + 1) D, K], [(N + 1) D]
    recent_ptr, fir_past_ptr, gain_ptr,  # [N, B, D, F], [N, D, F - 1], [N, D]
    state_re_ptr, state_im_ptr,  # [N, B, D, M]
    poles_re_ptr, poles_im_ptr, res_re_ptr, res_im_ptr,  # [N, D, M]
    B, D,
    N: tl.constexpr, K: tl.constexpr, F: tl.constexpr, M: tl.constexpr,
    M_POW2: tl.constexpr, BLOCK: tl.constexpr, IN_PROJ: tl.constexpr, BLOCK_IN: tl.constexpr,
    OUT_PROJ: tl.constexpr, BLOCK_OUT: tl.constexpr,
):
    b = tl.program_id(0)
    d = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = d < D
    width = (N + 1) * D
    modes = tl.arange(0, M_POW2)[None, :]
    in_modes = live[:, None] & (modes < M)
    rounded = u_ptr.dtype.element_ty  # the model's dtype (the input u is always passed)

    # The first input is the last group's short filter; the gates z_n come stage by stage.
    c = N * D + d
    p = projected(p_ptr, u_ptr, w_in_ptr, b_in_ptr, b, c, live, width, D, rounded, IN_PROJ,
                  BLOCK_IN)
    y = short_filter(p, window_ptr, conv_w_ptr, conv_b_ptr, b, c, live, width, rounded, K)
    for n in tl.static_range(N):
        channel = n * D + d  # this stage's row in the [N, D, ...] constants
        sequence = (n * B + b) * D + d  # and in the [N, B, D, ...] states
        # c_n: the modes' output plus the FIR taps over the older inputs (old state only); the
        # FIR head moves one place on as it is read, tap by tap, one thread per channel.
        state = sequence[:, None] * M + modes
        constant = channel[:, None] * M + modes
        re = tl.load(state_re_ptr + state, mask=in_modes, other=0.0)
        im = tl.load(state_im_ptr + state, mask=in_modes, other=0.0)
        res_re = tl.load(res_re_ptr + constant, mask=in_modes, other=0.0)
        res_im = tl.load(res_im_ptr + constant, mask=in_modes, other=0.0)
        known = tl.sum(res_re * re - res_im * im, axis=1)
        recent = recent_ptr + sequence * F
        newest = y
        leaving = newest  # the input that leaves the FIR head and enters the modes
        for j in tl.static_range(F - 1):
            older = tl.load(recent + j + 1, mask=live, other=0.0)
            known += older * tl.load(fir_past_ptr + channel * (F - 1) + j, mask=live, other=0.0)
            tl.store(recent + j, older, mask=live)
            if j == 0:
                leaving = older
        tl.store(recent + (F - 1), newest, mask=live)
        gain = tl.load(gain_ptr + channel, mask=live, other=0.0)
        p = projected(p_ptr, u_ptr, w_in_ptr, b_in_ptr, b, channel, live, width, D, rounded,
                      IN_PROJ, BLOCK_IN)
        z = short_filter(p, window_ptr, conv_w_ptr, conv_b_ptr, b, channel, live, width,
                         rounded, K)
        y = z * (known + gain * newest)
        poles_re = tl.load(poles_re_ptr + constant, mask=in_modes, other=0.0)
        poles_im = tl.load(poles_im_ptr + constant, mask=in_modes, other=0.0)
        tl.store(
            state_re_ptr + state, poles_re * re - poles_im * im + leaving[:, None],
            mask=in_modes,
        )
        tl.store(state_im_ptr + state, poles_re * im + poles_im * re, mask=in_modes)
    if OUT_PROJ:
        # this program's share of out_proj(y): its channels' columns times their outputs
        y = y.to(rounded).to(tl.float32)  # the plain step rounds y before the out-projection
        row = out_ptr + (tl.program_id(1) * B + b) * D
        for start in range(0, D, BLOCK_OUT):
            o = start + tl.arange(0, BLOCK_OUT)
            w = tl.load(
                w_out_ptr + o[None, :] * D + d[:, None],
                mask=live[:, None] & (o < D)[None, :],
                other=0.0,
            ).to(tl.float32)
            tl.store(row + o, tl.sum(w * y[:, None], axis=0), mask=o < D)
    else:
        tl.store(out_ptr + b * D + d, y, mask=live)


def modal_step(
    step: ModalStep, u: Tensor, in_proj: bool = False, out_proj: bool = False
) -> Tensor:
    """One recurrent step of `step`'s operator for the input u [B, D], every state updated in
    place; the same numbers as ModalStep's own forward. Returns the gated output y [B, D] in u's
    dtype, for the out-projection; or with `out_proj` (which needs `in_proj`) out_proj(y) itself
    as float32 partial sums [programs per sequence, B, D] without the bias, which the caller sums
    and rounds. The input projection runs as the operator's Linear (cuBLAS), or with `in_proj`
    inside the kernel."""
    N, D = step.order, step.width
    batch = step.window.shape[0]
    if u.shape != (batch, D):
        raise ValueError(f"u must have shape [batch={batch}, width={D}], got {tuple(u.shape)}")
    if out_proj and not in_proj:
        raise ValueError("out_proj=True needs in_proj=True (the whole mixer in one kernel)")
    linear = step.op.in_proj
    u = u.contiguous()
    p = u if in_proj else linear(u)  # p is not read when the kernel projects
    taps, head, modes = step.window.shape[-1], step.recent.shape[-1], step.state_re.shape[-1]
    block = step.block_channels
    programs = -(-D // block)
    if out_proj:
        out = torch.empty(programs, batch, D, dtype=torch.float32, device=u.device)
    else:
        out = torch.empty(batch, D, dtype=u.dtype, device=u.device)
    modal_step_kernel[(batch, programs)](
        p, u, linear.weight, linear.bias,  # HyenaOperator's in_proj always has a bias
        out, step.op.out_proj.weight,
        step.window, step.conv_w, step.conv_b,
        step.recent, step.fir_past, step.gain,
        step.state_re, step.state_im,
        step.poles_re, step.poles_im, step.res_re, step.res_im,
        batch, D,
        N=N, K=taps, F=head, M=modes,
        M_POW2=triton.next_power_of_2(modes), BLOCK=block,
        IN_PROJ=in_proj, BLOCK_IN=min(BLOCK_INPUTS, triton.next_power_of_2(D)),
        OUT_PROJ=out_proj, BLOCK_OUT=min(BLOCK_OUTPUTS, triton.next_power_of_2(D)),
    )
    return out
