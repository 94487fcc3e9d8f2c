"""The Hyena operator's recurrent decoding step as one Triton kernel.

`ModalStep` (hyena_lite.fastdecode) writes the step as PyTorch element-wise work that
torch.compile fuses into about six kernels per layer on a GPU (short filter, FIR head, modes, the
gating chain, the state updates); at batch 1 each costs a launch slot of a few microseconds in the
CUDA graph, more than its arithmetic. Here the same arithmetic runs as one kernel: a program takes
one sequence and a block of channels, reads their projected inputs, short-filter window, FIR inputs
and modal states once, runs every stage of the gating chain in registers, and writes the states
back in place. With `in_proj=True` the kernel also computes its channels' share of the input
projection (a matrix-vector product), so that a layer's mixer is one launch between the block's
norm and the out-projection.

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

BLOCK_CHANNELS = 32  # channels per program: 24 programs per sequence at width 768
BLOCK_INPUTS = 128  # input features per tile of the fused input projection


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
    out_ptr,  # [B, D] gated output, model dtype
    window_ptr, conv_w_ptr, conv_b_ptr,  # [B, (N + 1) D, K], [(N + 1) D, K], [(N + 1) D]
    recent_ptr, fir_past_ptr, gain_ptr,  # [N, B, D, F], [N, D, F - 1], [N, D]
    state_re_ptr, state_im_ptr,  # [N, B, D, M]
    poles_re_ptr, poles_im_ptr, res_re_ptr, res_im_ptr,  # [N, D, M]
    B, D,
    N: tl.constexpr, K: tl.constexpr, F: tl.constexpr, M: tl.constexpr,
    M_POW2: tl.constexpr, BLOCK: tl.constexpr, IN_PROJ: tl.constexpr, BLOCK_IN: tl.constexpr,
):
    b = tl.program_id(0)
    d = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = d < D
    width = (N + 1) * D
    modes = tl.arange(0, M_POW2)[None, :]
    in_modes = live[:, None] & (modes < M)
    rounded = out_ptr.dtype.element_ty

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
    tl.store(out_ptr + b * D + d, y, mask=live)


def modal_step(step: ModalStep, u: Tensor, in_proj: bool = False) -> Tensor:
    """One recurrent step of `step`'s operator for the input u [B, D]: the gated output y [B, D]
    in u's dtype (before the out-projection), every state updated in place; the same numbers as
    ModalStep's own forward. The input projection runs as the operator's Linear (cuBLAS), or with
    `in_proj` inside the kernel."""
    N, D = step.order, step.width
    batch = step.window.shape[0]
    if u.shape != (batch, D):
        raise ValueError(f"u must have shape [batch={batch}, width={D}], got {tuple(u.shape)}")
    linear = step.op.in_proj
    u = u.contiguous()
    p = u if in_proj else linear(u)  # p is not read when the kernel projects
    taps, head, modes = step.window.shape[-1], step.recent.shape[-1], step.state_re.shape[-1]
    out = torch.empty(batch, D, dtype=u.dtype, device=u.device)
    grid = (batch, -(-D // BLOCK_CHANNELS))
    modal_step_kernel[grid](
        p, u, linear.weight, linear.bias,  # HyenaOperator's in_proj always has a bias
        out,
        step.window, step.conv_w, step.conv_b,
        step.recent, step.fir_past, step.gain,
        step.state_re, step.state_im,
        step.poles_re, step.poles_im, step.res_re, step.res_im,
        batch, D,
        N=N, K=taps, F=head, M=modes,
        M_POW2=triton.next_power_of_2(modes), BLOCK=BLOCK_CHANNELS,
        IN_PROJ=in_proj, BLOCK_IN=min(BLOCK_INPUTS, triton.next_power_of_2(D)),
    )
    return out
