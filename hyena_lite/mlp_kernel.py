"""A GPT-2 block's MLP at a decoding step as one Triton kernel.

At batch 1 a decoding step is a chain of matrix-vector products and small element-wise kernels, and
on a GPU each costs a launch slot of a few microseconds in the CUDA graph: compiled, a GPT-2 MLP is
three (cuBLAS for `c_fc`, inductor's GELU, cuBLAS for `c_proj`). Here it is one: a program takes a
slice of the hidden units, reads their weights once, and for each sequence of the batch computes
them from the whole (normalised) input, `gelu(x W_fc[:, slice] + b_fc[slice])`, and multiplies them
by their rows of `c_proj`, writing that partial product (float32) to a row of its own. The caller
sums the rows (no atomics: the same numbers every run) and adds `c_proj`'s bias, element-wise work
that torch.compile fuses into the residual add and the next norm. The same design as the Hyena
mixer's fused step (`hyena_lite.modal_kernel`), so a layer of a student is four launches (norm,
mixer, norm, MLP), and a teacher's layer gets the same MLP: the speed benchmarks give it to both
sides. At batch 1 the step waits on memory's latency more than on its bandwidth (a layer's mixer,
4.7 MB of projections, took about ten times what its bytes need; chapter 10), so a program whose
weight slices fit one tile issues every read at once, before any arithmetic.

In a step written block by block (`hyena_lite.block_steps`) the kernel also starts from the
residual stream, the residual add and the norm as its prologue (`hyena_lite.block_prologue`), and
adds its products into one accumulator (atomically: the sums then come in varying order), so a
student's layer is two launches; launched as a programmatic dependent (Hopper), it reads its
weights before it waits for the kernel before it.

The plain module stays the reference (and the CPU path); tests compare the two on a GPU, and in
Triton's interpreter on a CPU (TRITON_INTERPRET=1, set before triton is imported; it rounds
float32 to bfloat16 toward zero, where GPUs round to nearest, so only float32 is compared there).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor, nn

from hyena_lite.block_prologue import NormInput, emit, input_tile, start_row, tile_of
from hyena_lite.modal_kernel import per_program

MAX_HIDDEN, MIN_HIDDEN = 64, 16  # hidden units a program computes (see units_per_program)
TILE_ELEMENTS = 16_384  # the largest weight tile a program holds (64 values a thread at 8 warps)


def units_per_program(hidden: int, device: torch.device) -> int:
    """Hidden units per program (`modal_kernel.per_program`, MIN_HIDDEN to MAX_HIDDEN), whatever
    the batch (a program reads its weight slices once and runs every sequence with them): 16 for
    GPT-2's 3,072, 192 programs on an H100's 132 multiprocessors. Measured on an H100 at batch 1
    (`scripts/mlp_step_speed.py`): 12.0 us an MLP at 16, 13.9 at 8, 19.4 at 32, 23.6 at 64 (cuBLAS
    after inductor 13.8); past batch 1 cuBLAS wins (15.6 us against 27.6 at batch 4)."""
    return per_program(1, hidden, device, MAX_HIDDEN, MIN_HIDDEN)


@triton.jit
def gelu_of(total, bias, rounded):
    """c_fc's output (float32 sums plus bias, rounded to the model's dtype), then GELU with the
    tanh approximation, 0.5 a (1 + tanh(u)) = a * sigmoid(2 u), rounded again."""
    a = (total + bias).to(rounded).to(tl.float32)
    inner = 0.7978845608028654 * (a + 0.044715 * a * a * a)
    return (a * tl.sigmoid(2.0 * inner)).to(rounded).to(tl.float32)


@triton.jit
def mlp_step_kernel(
    x_ptr,  # [B, D] the block's normalised input, model dtype (read without NORM)
    w_fc_ptr,  # [D, H] c_fc's weight (transformers' Conv1D: input by output)
    b_fc_ptr,  # [H]
    w_proj_ptr,  # [H, D] c_proj's weight
    out_ptr,  # [programs, B, D] float32 partial products; with ATOMIC [B, D], summed into
    base_ptr,  # with NORM: the input is norm(base + (delta + delta_bias).to(dtype)), and
    delta_ptr,  # program 0 writes base + ... to stream (hyena_lite.block_prologue)
    delta_bias_ptr,
    norm_w_ptr,
    norm_b_ptr,
    stream_ptr,
    eps,
    D,
    H,
    B: tl.constexpr,  # the batch, fixed for a decoder's life: at 1 the loop over it compiles away
    HIDDEN: tl.constexpr,
    WIDTH: tl.constexpr,
    ONE_TILE: tl.constexpr,  # WIDTH >= D: each weight slice read as one tile
    NORM: tl.constexpr,
    NORM_TILE: tl.constexpr,
    ATOMIC: tl.constexpr,
    PDL: tl.constexpr,  # launched as a programmatic dependent: wait for the kernel before
):
    h = tl.program_id(0) * HIDDEN + tl.arange(0, HIDDEN)
    live = h < H
    rounded = w_fc_ptr.dtype.element_ty
    first = tl.program_id(0) == 0
    rows = out_ptr if ATOMIC else out_ptr + tl.program_id(0) * B * D
    bias = tl.load(b_fc_ptr + h, mask=live, other=0.0).to(tl.float32)
    if ONE_TILE:
        # Both weight slices read once, every read issued at once (one trip to memory's
        # latency), then used for every sequence of the batch; with PDL before the previous
        # kernel has finished, since no weight depends on it.
        k = tl.arange(0, WIDTH)
        w_fc = tl.load(
            w_fc_ptr + k[:, None] * H + h[None, :], mask=(k < D)[:, None] & live[None, :], other=0.0
        )
        w_proj = tl.load(
            w_proj_ptr + h[:, None] * D + k[None, :],
            mask=live[:, None] & (k < D)[None, :],
            other=0.0,
        )
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    for b in range(B):
        mean, rstd = start_row(
            base_ptr,
            delta_ptr,
            delta_bias_ptr,
            stream_ptr,
            b * D,
            D,
            eps,
            rounded,
            first,
            NORM,
            NORM_TILE,
        )
        if ONE_TILE:
            x = input_tile(
                x_ptr,
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
            total = tl.sum(w_fc.to(tl.float32) * x[:, None], axis=0)
            hidden = tl.where(live, gelu_of(total, bias, rounded), 0.0)
            partial = tl.sum(w_proj.to(tl.float32) * hidden[:, None], axis=0)
            emit(rows + b * D + k, partial, k < D, ATOMIC)
        else:
            # This program's hidden units, from the whole input, tile by tile (the weights
            # read again for each sequence, from L2 after the first).
            total = tl.zeros([HIDDEN], dtype=tl.float32)
            for start in range(0, D, WIDTH):
                k = start + tl.arange(0, WIDTH)
                x = input_tile(
                    x_ptr,
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
                    w_fc_ptr + k[:, None] * H + h[None, :],
                    mask=(k < D)[:, None] & live[None, :],
                    other=0.0,
                ).to(tl.float32)
                total += tl.sum(w * x[:, None], axis=0)
            hidden = tl.where(live, gelu_of(total, bias, rounded), 0.0)
            # Their share of c_proj: the hidden units times their rows.
            for start in range(0, D, WIDTH):
                o = start + tl.arange(0, WIDTH)
                w = tl.load(
                    w_proj_ptr + h[:, None] * D + o[None, :],
                    mask=live[:, None] & (o < D)[None, :],
                    other=0.0,
                ).to(tl.float32)
                emit(rows + b * D + o, tl.sum(w * hidden[:, None], axis=0), o < D, ATOMIC)


def mlp_partials(
    mlp: nn.Module,
    x: Tensor | None,
    hidden_per_program: int,
    tile_elements: int = TILE_ELEMENTS,
    *,
    norm: NormInput | None = None,
    accumulator: Tensor | None = None,
    pdl: bool = False,
) -> Tensor:
    """GPT-2's `mlp(x)` for x [B, D] without `c_proj`'s bias, as float32 partial sums
    [programs, B, D], a program for each `hidden_per_program` hidden units: their
    sum plus the bias is the MLP's output. A program holds weight tiles of at most
    `tile_elements` values: its whole slice at once where that allows, else tile by tile. `mlp`
    must pass `check_mlp` (MLPStep checks once, not at every step).

    With `norm` (x None) the kernel computes its input itself, `norm.norm(h)` with h the residual
    add that `norm` describes (`hyena_lite.block_prologue`), and writes h to `norm.stream`. With
    `accumulator` (float32 [B, D]) the programs add their products into it (atomically: sums in
    varying order) and it is returned. `pdl`: launched as a programmatic dependent of the kernel
    before it (Hopper and later): the weights are read while that kernel finishes."""
    rows = norm.base if norm is not None else x
    if rows is None or rows.dim() != 2 or rows.shape[1] != mlp.c_fc.weight.shape[0]:
        raise ValueError(
            f"x must have shape [batch, {mlp.c_fc.weight.shape[0]}], got "
            f"{None if rows is None else tuple(rows.shape)}"
        )
    if hidden_per_program < 1 or hidden_per_program & (hidden_per_program - 1):
        raise ValueError(f"hidden_per_program must be a power of two, got {hidden_per_program}")
    rows = rows.contiguous()
    (batch, width), hidden = rows.shape, mlp.c_fc.weight.shape[1]
    programs = -(-hidden // hidden_per_program)
    tile = max(16, min(triton.next_power_of_2(width), tile_elements // hidden_per_program))
    if accumulator is None:
        out = torch.empty(programs, batch, width, dtype=torch.float32, device=rows.device)
    else:
        out = accumulator
    prologue = rows, rows, rows, rows, rows, rows, 0.0  # unread without NORM
    mlp_step_kernel[(programs,)](
        rows,
        mlp.c_fc.weight,
        mlp.c_fc.bias,
        mlp.c_proj.weight,
        out,
        *(prologue if norm is None else norm.arguments()),
        width,
        hidden,
        B=batch,
        HIDDEN=hidden_per_program,
        WIDTH=tile,
        ONE_TILE=tile >= width,
        NORM=norm is not None,
        NORM_TILE=tile_of(width),
        ATOMIC=accumulator is not None,
        PDL=pdl,
        num_warps=8 if hidden_per_program * tile >= tile_elements // 2 else 4,
        **({"launch_pdl": True} if pdl else {}),
    )
    return out


def computes_gelu_tanh(activation: object) -> bool:
    """Whether `activation` is GELU with the tanh approximation (transformers' gelu_new,
    gelu_pytorch_tanh, gelu_fast), judged by what it computes on a probe, not by its class name."""
    if not callable(activation):
        return False
    probe = torch.linspace(-6.0, 6.0, 97)
    expected = 0.5 * probe * (1 + torch.tanh(0.7978845608028654 * (probe + 0.044715 * probe**3)))
    try:
        got = activation(probe)
    except (TypeError, RuntimeError):
        return False
    return isinstance(got, Tensor) and torch.allclose(got, expected, atol=1e-5, rtol=0)


def check_mlp(mlp: nn.Module) -> None:
    """Refuse an MLP the kernel does not compute, saying which one it does."""
    fc, proj = getattr(mlp, "c_fc", None), getattr(mlp, "c_proj", None)
    if fc is None or proj is None or fc.weight.dim() != 2 or proj.weight.dim() != 2:
        raise ValueError(
            f"{type(mlp).__name__} is not a GPT-2 MLP (c_fc, GELU, c_proj); the fused MLP step "
            "computes GPT-2's only: decode this model with mlp_kernel='torch'"
        )
    if not computes_gelu_tanh(getattr(mlp, "act", None)):
        raise ValueError(
            f"the fused MLP step computes GELU with the tanh approximation (GPT-2's gelu_new), "
            f"this MLP's activation is {type(getattr(mlp, 'act', None)).__name__}: decode it with "
            "mlp_kernel='torch'"
        )
    if fc.bias is None or proj.bias is None:
        raise ValueError("the fused MLP step needs c_fc and c_proj with biases, as GPT-2 has")


class MLPStep(nn.Module):
    """Stands in for a GPT-2 block's MLP during a decoding step: the same output, from one
    Triton kernel (`mlp_partials`) and the sum of its partial rows. `hidden_per_program`
    (default: `units_per_program`)."""

    def __init__(self, mlp: nn.Module, hidden_per_program: int | None = None) -> None:
        super().__init__()
        check_mlp(mlp)
        hidden, device = mlp.c_fc.weight.shape[1], mlp.c_fc.weight.device
        self.mlp = mlp
        self.hidden_per_program = hidden_per_program or units_per_program(hidden, device)

    def forward(self, hidden_states: Tensor) -> Tensor:
        if hidden_states.shape[1] != 1:
            raise ValueError(f"MLPStep runs one position a step, got {hidden_states.shape[1]}")
        partial = mlp_partials(self.mlp, hidden_states[:, 0], self.hidden_per_program)
        out = partial.sum(0) + self.mlp.c_proj.bias
        return out.to(hidden_states.dtype)[:, None]
