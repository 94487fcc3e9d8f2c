"""The Hyena operator's recurrent decoding step as one Triton kernel.

`ModalStep` (hyena_lite.fastdecode) writes the step as PyTorch element-wise work that
torch.compile fuses into six kernels per layer on a GPU (short filter, FIR head, modes, the
gating chain, the state updates); at batch 1 each costs a launch slot of a few microseconds in the
CUDA graph, more than its arithmetic. Here the same arithmetic runs as one kernel: a program takes
one sequence and a block of channels, reads their projected inputs, short-filter window, FIR inputs
and modal states once, runs every stage of the gating chain in registers, and writes the states
back in place. ModalStep stays the reference (and the CPU path); tests compare the two, on a GPU
or in Triton's interpreter (TRITON_INTERPRET=1, set before triton is imported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import triton
import triton.language as tl
from torch import Tensor

if TYPE_CHECKING:
    from hyena_lite.fastdecode import ModalStep

BLOCK_CHANNELS = 64  # channels per program: 12 programs per sequence at width 768


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


@triton.jit
def short_filter(p_ptr, window_ptr, conv_w_ptr, conv_b_ptr, b, c, live, width, rounded,
                 K: tl.constexpr):
    """Group channels c's short-filter output (rounded to the model's dtype, as the plain
    step does), its window moved one place on with the new projected input at its end."""
    p = tl.load(p_ptr + b * width + c, mask=live, other=0.0).to(tl.float32)
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
    p_ptr, out_ptr,  # [B, (N + 1) D] projected inputs (model dtype), [B, D] output
    window_ptr, conv_w_ptr, conv_b_ptr,  # [B, (N + 1) D, K], [(N + 1) D, K], [(N + 1) D]
    recent_ptr, fir_past_ptr, gain_ptr,  # [N, B, D, F], [N, D, F - 1], [N, D]
    state_re_ptr, state_im_ptr,  # [N, B, D, M]
    poles_re_ptr, poles_im_ptr, res_re_ptr, res_im_ptr,  # [N, D, M]
    B, D,
    N: tl.constexpr, K: tl.constexpr, F: tl.constexpr, M: tl.constexpr,
    F_POW2: tl.constexpr, M_POW2: tl.constexpr, BLOCK: tl.constexpr,
):
    b = tl.program_id(0)
    d = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = d < D
    width = (N + 1) * D
    taps = tl.arange(0, F_POW2)[None, :]
    modes = tl.arange(0, M_POW2)[None, :]
    in_head = live[:, None] & (taps < F)
    in_modes = live[:, None] & (modes < M)
    rounded = out_ptr.dtype.element_ty

    # The first input is the last group's short filter; the gates z_n come stage by stage.
    y = short_filter(p_ptr, window_ptr, conv_w_ptr, conv_b_ptr, b, N * D + d, live, width,
                     rounded, K)
    for n in tl.static_range(N):
        channel = n * D + d  # this stage's row in the [N, D, ...] constants
        sequence = (n * B + b) * D + d  # and in the [N, B, D, ...] states
        # c_n: the FIR taps over the older inputs plus the modes' output (old state only).
        recent = recent_ptr + sequence[:, None] * F + taps
        older = tl.load(recent + 1, mask=in_head & (taps < F - 1), other=0.0)
        fir = tl.load(
            fir_past_ptr + channel[:, None] * (F - 1) + taps,
            mask=in_head & (taps < F - 1),
            other=0.0,
        )
        state = sequence[:, None] * M + modes
        constant = channel[:, None] * M + modes
        re = tl.load(state_re_ptr + state, mask=in_modes, other=0.0)
        im = tl.load(state_im_ptr + state, mask=in_modes, other=0.0)
        res_re = tl.load(res_re_ptr + constant, mask=in_modes, other=0.0)
        res_im = tl.load(res_im_ptr + constant, mask=in_modes, other=0.0)
        known = tl.sum(fir * older, axis=1) + tl.sum(res_re * re - res_im * im, axis=1)
        gain = tl.load(gain_ptr + channel, mask=live, other=0.0)
        newest = y
        z = short_filter(p_ptr, window_ptr, conv_w_ptr, conv_b_ptr, b, n * D + d, live,
                         width, rounded, K)
        y = z * (known + gain * newest)
        # The FIR head moves one place on; the input leaving it enters the modes.
        shifted = tl.where(taps == F - 1, newest[:, None], older)
        tl.store(recent, shifted, mask=in_head)
        leaving = tl.sum(tl.where(taps == 0, shifted, 0.0), axis=1)
        poles_re = tl.load(poles_re_ptr + constant, mask=in_modes, other=0.0)
        poles_im = tl.load(poles_im_ptr + constant, mask=in_modes, other=0.0)
        tl.store(
            state_re_ptr + state, poles_re * re - poles_im * im + leaving[:, None],
            mask=in_modes,
        )
        tl.store(state_im_ptr + state, poles_re * im + poles_im * re, mask=in_modes)
    tl.store(out_ptr + b * D + d, y, mask=live)


def modal_step(step: ModalStep, p: Tensor, dtype: torch.dtype) -> Tensor:
    """One recurrent step of `step`'s operator from its projected input p [B, (N + 1) D]: the
    gated output y [B, D] in `dtype` (before the out-projection), every state updated in place;
    the same numbers as ModalStep's own forward."""
    batch, width = p.shape
    N, D = step.order, step.width
    if width != (N + 1) * D or batch != step.window.shape[0]:
        raise ValueError(
            f"p must have shape [batch={step.window.shape[0]}, {(N + 1) * D}], got "
            f"{tuple(p.shape)}"
        )
    taps, head, modes = step.window.shape[-1], step.recent.shape[-1], step.state_re.shape[-1]
    out = torch.empty(batch, D, dtype=dtype, device=p.device)
    grid = (batch, -(-D // BLOCK_CHANNELS))
    modal_step_kernel[grid](
        p.contiguous(), out,
        step.window, step.conv_w, step.conv_b,
        step.recent, step.fir_past, step.gain,
        step.state_re, step.state_im,
        step.poles_re, step.poles_im, step.res_re, step.res_im,
        batch, D,
        N=N, K=taps, F=head, M=modes,
        F_POW2=_next_power_of_two(head), M_POW2=_next_power_of_two(modes),
        BLOCK=BLOCK_CHANNELS,
    )
    return out
