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

In a step written block by block (`hyena_lite.block_steps`) the whole-mixer kernel also starts
from the residual stream (the residual add and the norm as its prologue,
`hyena_lite.block_prologue`) and adds its out-projection into one accumulator (atomically);
launched as a programmatic dependent (Hopper), it asks for its projections' weights in L2 before
it waits for the kernel before it.

At batch 1 a program per 32 channels gives only 24 programs at width 768, a fifth of an H100's
132 multiprocessors: `channels_per_program` takes fewer channels per program (down to 16, the
fastest measured) until the grid fills the GPU.

Every thread of a program holds copies of a block's values (16 channels spread over 256 threads),
so a program that read a state and wrote it back in the same breath would let one copy overwrite
what a slower copy had still to read (a race the first version had, seen on an H100 as logits
0.2 off). The kernel reads everything first (projected inputs, windows, FIR inputs, modes, all
stages at once as [stage, channel, tap] tiles), runs the gating chain in registers, and writes the
states back only after a barrier.

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

from hyena_lite.block_prologue import NormInput, emit, input_tile, prefetch, start_row, tile_of

if TYPE_CHECKING:
    from hyena_lite.fastdecode import ModalStep

MAX_CHANNELS, MIN_CHANNELS = 32, 16  # channels per program (see channels_per_program)
TILE_ELEMENTS = 16_384  # the largest projection tile a program holds (64 values a thread)
WARPS = 8


def per_program(
    batch: int, units: int, device: torch.device, most: int, fewest: int, per_processor: int = 2
) -> int:
    """Units (channels, hidden units, keys) per program of a kernel with batch x units / block
    programs (batch 1 for one whose programs run the whole batch): the most (up to `most`, a power
    of two) that still give every multiprocessor of the GPU `per_processor` programs, and no fewer
    than `fewest`."""
    processors = (
        torch.cuda.get_device_properties(device).multi_processor_count
        if device.type == "cuda"
        else 1
    )
    block = most
    while block > fewest and batch * -(-units // block) < per_processor * processors:
        block //= 2
    return block


def channels_per_program(batch: int, width: int, device: torch.device) -> int:
    """Channels per program (`per_program`, 16 to MAX_CHANNELS): 16 at batch 1 (48 programs at
    width 768; measured on an H200, the fused step of a GPT-2-shaped student took 0.365 ms with 16
    channels a program, 0.388 ms with 8 and 0.386 ms with 4: fewer, fuller programs beat more,
    emptier ones), 32 from batch 11 on a GPU of 132 multiprocessors."""
    return per_program(batch, width, device, MAX_CHANNELS, MIN_CHANNELS)


@triton.jit
def pick(rows, index, tile):
    """Row `index` of tile [R, C] (rows: its row numbers [R, 1]) as a vector [C]."""
    return tl.sum(tl.where(rows == index, tile, 0.0), axis=0)


@triton.jit
def modal_step_kernel(
    p_ptr,
    u_ptr,
    w_in_ptr,
    b_in_ptr,  # [B, (N+1)D] projected input, or [B, D] input + Linear
    out_ptr,  # [B, D] gated output, model dtype; or [programs per sequence, B, D] float32
    w_out_ptr,  # [D, D] out-projection (read with OUT_PROJ)
    window_ptr,
    conv_w_ptr,
    conv_b_ptr,  # [B, (N + 1) D, K], [(N + 1) D, K], [(N + 1) D]
    recent_ptr,
    fir_past_ptr,
    gain_ptr,  # [N, B, D, F], [N, D, F - 1], [N, D]
    state_re_ptr,
    state_im_ptr,  # [N, B, D, M]
    poles_re_ptr,
    poles_im_ptr,
    res_re_ptr,
    res_im_ptr,  # [N, D, M]
    base_ptr,  # with NORM the input is norm(base + (delta + delta_bias).to(dtype)), computed
    delta_ptr,  # here, and the first program of a sequence writes base + ... to stream
    delta_bias_ptr,  # (hyena_lite.block_prologue)
    norm_w_ptr,
    norm_b_ptr,
    stream_ptr,
    eps,
    B,
    D,
    N: tl.constexpr,
    K: tl.constexpr,
    F: tl.constexpr,
    M: tl.constexpr,
    GROUPS: tl.constexpr,
    STAGES: tl.constexpr,  # N + 1 and N, rounded up to powers of two
    K_POW2: tl.constexpr,
    F_POW2: tl.constexpr,
    M_POW2: tl.constexpr,
    BLOCK: tl.constexpr,
    IN_PROJ: tl.constexpr,
    BLOCK_IN: tl.constexpr,
    OUT_PROJ: tl.constexpr,
    BLOCK_OUT: tl.constexpr,
    NORM: tl.constexpr,
    NORM_TILE: tl.constexpr,
    ATOMIC: tl.constexpr,  # with OUT_PROJ: add the product into out [B, D] instead of a row
    PDL: tl.constexpr,  # launched as a programmatic dependent: wait for the kernel before
    LINES: tl.constexpr,  # with PDL: cache lines of a projection row, and the out-projection's
    OUT_ROWS: tl.constexpr,  # rows, rounded up to powers of two (what the prefetch covers)
):
    b = tl.program_id(0)
    d = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = d < D
    width = (N + 1) * D
    rounded = u_ptr.dtype.element_ty  # the model's dtype (the input u is always passed)
    if PDL:
        # The projections' weights do not depend on the kernel before: have them fetched into L2
        # while it finishes, a pointer per cache line of 64 two-byte values (rows past the end
        # point at the last one), then wait for its outputs.
        g = tl.minimum(tl.arange(0, GROUPS), N)[:, None, None]
        line = tl.minimum(tl.arange(0, LINES), (D - 1) // 64)[None, None, :] * 64
        prefetch(w_in_ptr + (g * D + tl.minimum(d, D - 1)[None, :, None]) * D + line)
        o = tl.minimum(tl.arange(0, OUT_ROWS), D - 1)  # a row's channels share one line
        prefetch(w_out_ptr + o * D + tl.program_id(1) * BLOCK)
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    mean, rstd = start_row(
        base_ptr,
        delta_ptr,
        delta_bias_ptr,
        stream_ptr,
        b * D,
        D,
        eps,
        rounded,
        tl.program_id(1) == 0,
        NORM,
        NORM_TILE,
    )

    # Every group's projected input P [group, channel] (groups 0..N-1 feed the gates z_n, group
    # N the first input y_0), rounded to the model's dtype as the plain step's Linear returns it.
    g = tl.arange(0, GROUPS)[:, None]
    channel = g * D + d[None, :]
    grouped = (g < N + 1) & live[None, :]
    if IN_PROJ:
        total = tl.zeros([GROUPS, BLOCK], dtype=tl.float32)
        for start in range(0, D, BLOCK_IN):
            k = start + tl.arange(0, BLOCK_IN)
            x = input_tile(
                u_ptr,
                base_ptr,
                delta_ptr,
                delta_bias_ptr,
                norm_w_ptr,
                norm_b_ptr,
                b * D,
                k,
                k < D,
                mean,
                rstd,
                rounded,
                NORM,
            )
            w = tl.load(
                w_in_ptr + channel[:, :, None] * D + k[None, None, :],
                mask=grouped[:, :, None] & (k < D)[None, None, :],
                other=0.0,
            ).to(tl.float32)
            total += tl.sum(w * x[None, None, :], axis=2)
        bias = tl.load(b_in_ptr + channel, mask=grouped, other=0.0).to(tl.float32)
        P = (total + bias).to(rounded).to(tl.float32)
    else:
        P = tl.load(p_ptr + b * width + channel, mask=grouped, other=0.0).to(tl.float32)

    # The short filter of every group: the window's K - 1 older inputs and the new one.
    t = tl.arange(0, K_POW2)[None, None, :]
    older_taps = grouped[:, :, None] & (t >= 1) & (t < K)
    window = window_ptr + (b * width + channel)[:, :, None] * K + t
    past = tl.load(window, mask=older_taps, other=0.0)
    conv_w = tl.load(conv_w_ptr + channel[:, :, None] * K + t - 1, mask=older_taps, other=0.0)
    newest_w = tl.load(conv_w_ptr + channel * K + (K - 1), mask=grouped, other=0.0)
    conv_b = tl.load(conv_b_ptr + channel, mask=grouped, other=0.0)
    Z = (conv_b + P * newest_w + tl.sum(past * conv_w, axis=2)).to(rounded).to(tl.float32)

    # Per stage n: c_n, the FIR taps over the older inputs plus the modes' output (old state).
    n = tl.arange(0, STAGES)[:, None]
    staged = (n < N) & live[None, :]
    constant = n * D + d[None, :]  # rows of the [N, D, ...] constants
    sequence = (n * B + b) * D + d[None, :]  # and of the [N, B, D, ...] states
    f = tl.arange(0, F_POW2)[None, None, :]
    older_inputs = staged[:, :, None] & (f >= 1) & (f < F)
    recent_at = recent_ptr + sequence[:, :, None] * F + f
    recent = tl.load(recent_at, mask=older_inputs, other=0.0)
    fir_past = tl.load(
        fir_past_ptr + constant[:, :, None] * (F - 1) + f - 1, mask=older_inputs, other=0.0
    )
    m = tl.arange(0, M_POW2)[None, None, :]
    in_modes = staged[:, :, None] & (m < M)
    state = sequence[:, :, None] * M + m
    modal = constant[:, :, None] * M + m
    re = tl.load(state_re_ptr + state, mask=in_modes, other=0.0)
    im = tl.load(state_im_ptr + state, mask=in_modes, other=0.0)
    res_re = tl.load(res_re_ptr + modal, mask=in_modes, other=0.0)
    res_im = tl.load(res_im_ptr + modal, mask=in_modes, other=0.0)
    poles_re = tl.load(poles_re_ptr + modal, mask=in_modes, other=0.0)
    poles_im = tl.load(poles_im_ptr + modal, mask=in_modes, other=0.0)
    known = tl.sum(res_re * re - res_im * im, axis=2) + tl.sum(recent * fir_past, axis=2)
    gain = tl.load(gain_ptr + constant, mask=staged, other=0.0)

    # The gating chain y_{n+1} = z_n * (c_n + g_n * y_n), in registers.
    y = pick(g, N, Z)
    inputs = tl.zeros([STAGES, BLOCK], dtype=tl.float32)  # y_n, each stage's newest input
    for s in tl.static_range(N):
        inputs = tl.where(n == s, y[None, :], inputs)
        y = pick(g, s, Z) * (pick(n, s, known) + pick(n, s, gain) * y)
    if F > 1:  # the input that leaves the FIR head and enters the modes
        leaving = tl.sum(tl.where(f == 1, recent, 0.0), axis=2)
    else:
        leaving = inputs

    if OUT_PROJ:  # this program's share of out_proj(y): its channels' columns times y
        y = y.to(rounded).to(tl.float32)  # the plain step rounds y before the out-projection
        row = out_ptr + (b if ATOMIC else tl.program_id(1) * B + b) * D
        for start in range(0, D, BLOCK_OUT):
            o = start + tl.arange(0, BLOCK_OUT)
            w = tl.load(
                w_out_ptr + o[None, :] * D + d[:, None],
                mask=live[:, None] & (o < D)[None, :],
                other=0.0,
            ).to(tl.float32)
            emit(row + o, tl.sum(w * y[:, None], axis=0), o < D, ATOMIC)
    else:
        tl.store(out_ptr + b * D + d, y, mask=live)

    # Every read is done: only now may any thread write a state back.
    tl.debug_barrier()
    tl.store(window - 1, past, mask=older_taps)  # the window moves one place on
    tl.store(window_ptr + (b * width + channel) * K + (K - 1), P, mask=grouped)
    tl.store(recent_at - 1, recent, mask=older_inputs)  # and so does each FIR head
    tl.store(recent_ptr + sequence * F + (F - 1), inputs, mask=staged)
    tl.store(
        state_re_ptr + state, poles_re * re - poles_im * im + leaving[:, :, None], mask=in_modes
    )
    tl.store(state_im_ptr + state, poles_re * im + poles_im * re, mask=in_modes)


def modal_step(
    step: ModalStep,
    u: Tensor | None,
    in_proj: bool = False,
    out_proj: bool = False,
    *,
    norm: NormInput | None = None,
    accumulator: Tensor | None = None,
    pdl: bool = False,
) -> Tensor:
    """One recurrent step of `step`'s operator for the input u [B, D], every state updated in
    place; the same numbers as ModalStep's own forward. Returns the gated output y [B, D] in u's
    dtype, for the out-projection; or with `out_proj` (which needs `in_proj`) out_proj(y) itself
    as float32 partial sums [programs per sequence, B, D] without the bias, which the caller sums
    and rounds. The input projection runs as the operator's Linear (cuBLAS), or with `in_proj`
    inside the kernel.

    The whole mixer (both projections) may also start from the residual stream and end in it:
    with `norm` (u None) the kernel computes its input, `norm.norm(h)` of the residual add `norm`
    describes (`hyena_lite.block_prologue`), and writes h to `norm.stream`; with `accumulator`
    (float32 [B, D]) it adds out_proj(y) into it (atomically) and returns it. `pdl`: launched as a
    programmatic dependent of the kernel before it (Hopper and later)."""
    N, D = step.order, step.width
    batch = step.window.shape[0]
    if norm is not None:
        if not (in_proj and out_proj):
            raise ValueError("norm needs in_proj=True and out_proj=True (the whole mixer)")
        u = norm.base
    if accumulator is not None and not out_proj:
        raise ValueError("accumulator needs out_proj=True (the kernel sums the out-projection)")
    if u is None or u.shape != (batch, D):
        raise ValueError(
            f"u must have shape [batch={batch}, width={D}], got "
            f"{None if u is None else tuple(u.shape)}"
        )
    if out_proj and not in_proj:
        raise ValueError("out_proj=True needs in_proj=True (the whole mixer in one kernel)")
    linear = step.op.in_proj
    u = u.contiguous()
    p = u if in_proj else linear(u)  # p is not read when the kernel projects
    taps, head, modes = step.window.shape[-1], step.recent.shape[-1], step.state_re.shape[-1]
    block = step.block_channels
    programs = -(-D // block)
    groups = triton.next_power_of_2(N + 1)
    if accumulator is not None:
        out = accumulator
    elif out_proj:
        out = torch.empty(programs, batch, D, dtype=torch.float32, device=u.device)
    else:
        out = torch.empty(batch, D, dtype=u.dtype, device=u.device)
    prologue = u, u, u, u, u, u, 0.0  # unread without NORM
    modal_step_kernel[(batch, programs)](
        p,
        u,
        linear.weight,
        linear.bias,  # HyenaOperator's in_proj always has a bias
        out,
        step.op.out_proj.weight,
        step.window,
        step.conv_w,
        step.conv_b,
        step.recent,
        step.fir_past,
        step.gain,
        step.state_re,
        step.state_im,
        step.poles_re,
        step.poles_im,
        step.res_re,
        step.res_im,
        *(prologue if norm is None else norm.arguments()),
        batch,
        D,
        N=N,
        K=taps,
        F=head,
        M=modes,
        GROUPS=groups,
        STAGES=triton.next_power_of_2(N),
        K_POW2=triton.next_power_of_2(taps),
        F_POW2=triton.next_power_of_2(head),
        M_POW2=triton.next_power_of_2(modes),
        BLOCK=block,
        IN_PROJ=in_proj,
        BLOCK_IN=_tile(D, groups * block),
        OUT_PROJ=out_proj,
        BLOCK_OUT=_tile(D, block),
        NORM=norm is not None,
        NORM_TILE=tile_of(D),
        ATOMIC=accumulator is not None,
        PDL=pdl,
        LINES=triton.next_power_of_2(-(-D // 64)),
        OUT_ROWS=triton.next_power_of_2(D),
        num_warps=WARPS,
        **({"launch_pdl": True} if pdl else {}),
    )
    return out


def _tile(features: int, rows: int) -> int:
    """Features per tile of a projection with `rows` rows a program: all of them (rounded up to a
    power of two) where TILE_ELEMENTS allows, else the most that it allows."""
    return max(16, min(triton.next_power_of_2(features), TILE_ELEMENTS // rows))
