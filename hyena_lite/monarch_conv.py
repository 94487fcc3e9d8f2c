"""The causal long convolution as one Triton program per channel, its FFT computed by matrix
products (FlashFFTConv's idea, Fu et al., 2023; the four-step FFT of Bailey, 1990), with the
Hyena gate fused in: out = gate * ((k * u)[:L] + D u).

The FFT of size n = n1 n2 (powers of two): the zero-padded signal x as [n1, n2] (x[a n2 + b]);
A = F1 x (only the first n1 / 2 rows of x are signal), A *= T (the twiddles W_n^(b k1)),
C = A F2, so that C[k1, k2] = X[k1 + n1 k2]; the filter's spectrum is kept in that permuted layout.
The inverse: A' = (C K) conj(F2), A' *= conj(T), y = conj(F1)[: n1 / 2] A' / n (the first L = n / 2
outputs). Twelve real matrix products a channel, as `tl.dot`. From n = 8192 the inner FFT of
size m = n2 n3 is split again (n = 32 n2 n3, every matrix 16 to 32 wide): the middle axis of the
[32, n2, n3] tile is moved last, multiplied, and moved back (`_middle`); twenty products.

Measured on an H100 (hyena_lite/results/monarch_h100.json; batch 1, 768 channels, TF32 products,
both sides as CUDA graphs, the cuFFT convolution also compiled): 2.0x the cuFFT convolution at
L = 1K, 1.5x at 2K and 4K (three stages at 4K), 1.14x slower at 8K; from 16K no kernel builds (one
program cannot hold a channel). Compiled for Hopper without a GPU (`scripts/monarch_resources.py`),
the three-stage kernel at n = 8192 takes 255 registers a thread: with 8 warps one program fills an
SM's registers (8 warps an SM, little to hide latency), with 4 it spills 1,240 bytes a thread.
One channel's tile is 64 KB, a quarter of the register file, and three or four are live between
stages; bf16 products or tiles did not lower the count. A faster kernel needs another
decomposition (a channel over several programs, or its tiles in shared memory). So `supports`
takes FFT sizes 2048 to 8192 (L from 513 to 4096). `hyena_lite.fastpath` uses it at inference when
`FastPath.monarch` is on (opt-in until timed inside the operator). "tf32" products for 16-bit
inputs, "ieee" float32 for float32 ones (and in Triton's interpreter on a CPU, TRITON_INTERPRET=1,
where the tests run it).
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

MIN_FFT = 2048  # n1 = 32 at least: tl.dot needs 16 rows in the padded half
MIN_FFT3 = 8192  # the three-stage kernel: 32 x 16 x 16
MAX_FFT = 8192  # the largest size measured faster than cuFFT (H100)


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr):
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _cdot(ar, ai, br, bi, PRECISION: tl.constexpr):
    """The complex matrix product (ar + i ai) @ (br + i bi), as four real ones."""
    real = _dot(ar, br, PRECISION) - _dot(ai, bi, PRECISION)
    return real, _dot(ar, bi, PRECISION) + _dot(ai, br, PRECISION)


@triton.jit
def _first_stage(
    u_ptr, row, length, f1r_ptr, f1i_ptr, N1: tl.constexpr, W: tl.constexpr, PRECISION: tl.constexpr
):
    """The row's zero-padded signal as [N1 / 2, W] (x[a W + j]; the other N1 / 2 rows are padding)
    and F1 times it, [N1, W] complex: only F1's first N1 / 2 columns meet signal."""
    HALF: tl.constexpr = N1 // 2
    a = tl.arange(0, HALF)
    signal = a[:, None] * W + tl.arange(0, W)[None, :]
    x = tl.load(u_ptr + row * length + signal, mask=signal < length, other=0.0).to(tl.float32)
    f1_half = tl.arange(0, N1)[:, None] * N1 + a[None, :]
    ar = _dot(tl.load(f1r_ptr + f1_half), x, PRECISION)
    return x, ar, _dot(tl.load(f1i_ptr + f1_half), x, PRECISION)


@triton.jit
def _last_stage(
    out_ptr,
    gate_ptr,
    row,
    channels,
    gate_batch_stride,
    length,
    gr,
    gi,
    x,
    skip,
    f1r_ptr,
    f1i_ptr,
    inv_n,
    N1: tl.constexpr,
    W: tl.constexpr,
    HAS_GATE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """out = gate * (Re(conj(F1)[:N1 / 2] G) / n + D x), float32, stored: the inverse's last stage,
    the first L = n / 2 outputs; the gate's row is at batch * gate_batch_stride + channel * L."""
    HALF: tl.constexpr = N1 // 2
    a = tl.arange(0, HALF)
    f1_rows = a[:, None] * N1 + tl.arange(0, N1)[None, :]
    y = _dot(tl.load(f1r_ptr + f1_rows), gr, PRECISION)
    y += _dot(tl.load(f1i_ptr + f1_rows), gi, PRECISION)
    signal = a[:, None] * W + tl.arange(0, W)[None, :]
    kept = signal < length
    y = y * inv_n + skip * x
    if HAS_GATE:
        start = (row // channels) * gate_batch_stride + (row % channels) * length
        y *= tl.load(gate_ptr + start + signal, mask=kept, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * length + signal, y, mask=kept)


@triton.jit
def _conv2_kernel(
    u_ptr,  # [rows, length]: the signals, row = batch * channels + channel
    out_ptr,  # [rows, length], float32
    gate_ptr,  # the gates (rows as _last_stage says), or u_ptr when HAS_GATE is off
    skip_ptr,  # [channels]
    kr_ptr,  # [channels, N1, N2]: the filters' spectra, permuted
    ki_ptr,
    f1r_ptr,  # [N1, N1]
    f1i_ptr,
    f2r_ptr,  # [N2, N2]
    f2i_ptr,
    tr_ptr,  # [N1, N2]
    ti_ptr,
    length,
    channels,
    gate_batch_stride,
    inv_n,
    N1: tl.constexpr,
    N2: tl.constexpr,
    HAS_GATE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    row = tl.program_id(0)
    channel = row % channels
    x, ar, ai = _first_stage(u_ptr, row, length, f1r_ptr, f1i_ptr, N1, N2, PRECISION)
    k1 = tl.arange(0, N1)
    b = tl.arange(0, N2)
    grid = k1[:, None] * N2 + b[None, :]
    tr = tl.load(tr_ptr + grid)
    ti = tl.load(ti_ptr + grid)
    ar, ai = ar * tr - ai * ti, ar * ti + ai * tr
    square = b[:, None] * N2 + b[None, :]
    f2r = tl.load(f2r_ptr + square)
    f2i = tl.load(f2i_ptr + square)
    cr, ci = _cdot(ar, ai, f2r, f2i, PRECISION)
    kr = tl.load(kr_ptr + channel * N1 * N2 + grid)
    ki = tl.load(ki_ptr + channel * N1 * N2 + grid)
    cr, ci = cr * kr - ci * ki, cr * ki + ci * kr
    ar, ai = _cdot(cr, ci, f2r, -f2i, PRECISION)  # C conj(F2)
    ar, ai = ar * tr + ai * ti, ai * tr - ar * ti  # conj(T)
    skip = tl.load(skip_ptr + channel)
    _last_stage(
        out_ptr, gate_ptr, row, channels, gate_batch_stride, length, ar, ai, x, skip,
        f1r_ptr, f1i_ptr, inv_n, N1, N2, HAS_GATE, PRECISION,
    )  # fmt: skip


@triton.jit
def _middle(
    ar, ai, fr, fi, N1: tl.constexpr, N2: tl.constexpr, N3: tl.constexpr, PRECISION: tl.constexpr
):
    """A [N1, N2 N3] read as [N1, N2, N3], its middle axis multiplied by the symmetric matrix F:
    the axis moved last, one matrix product, moved back."""
    pr = tl.reshape(tl.permute(tl.reshape(ar, (N1, N2, N3)), (0, 2, 1)), (N1 * N3, N2))
    pi = tl.reshape(tl.permute(tl.reshape(ai, (N1, N2, N3)), (0, 2, 1)), (N1 * N3, N2))
    qr, qi = _cdot(pr, pi, fr, fi, PRECISION)
    qr = tl.reshape(tl.permute(tl.reshape(qr, (N1, N3, N2)), (0, 2, 1)), (N1, N2 * N3))
    qi = tl.reshape(tl.permute(tl.reshape(qi, (N1, N3, N2)), (0, 2, 1)), (N1, N2 * N3))
    return qr, qi


@triton.jit
def _conv3_kernel(
    u_ptr,  # [rows, length]
    out_ptr,
    gate_ptr,
    skip_ptr,
    kr_ptr,  # [channels, N1 N2, N3]: the filters' spectra, permuted
    ki_ptr,
    f1r_ptr,  # [N1, N1]
    f1i_ptr,
    f2r_ptr,  # [N2, N2]
    f2i_ptr,
    f3r_ptr,  # [N3, N3]
    f3i_ptr,
    t1r_ptr,  # [N1, N2 N3]: W_n^(k1 j)
    t1i_ptr,
    t2r_ptr,  # [N2 N3]: W_m^(k2 c), m = N2 N3
    t2i_ptr,
    length,
    channels,
    gate_batch_stride,
    inv_n,
    N1: tl.constexpr,
    N2: tl.constexpr,
    N3: tl.constexpr,
    HAS_GATE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    row = tl.program_id(0)
    channel = row % channels
    M: tl.constexpr = N2 * N3
    x, ar, ai = _first_stage(u_ptr, row, length, f1r_ptr, f1i_ptr, N1, M, PRECISION)
    k1 = tl.arange(0, N1)
    j = tl.arange(0, M)
    wide = k1[:, None] * M + j[None, :]
    t1r = tl.load(t1r_ptr + wide)
    t1i = tl.load(t1i_ptr + wide)
    ar, ai = ar * t1r - ai * t1i, ar * t1i + ai * t1r
    b = tl.arange(0, N2)
    f2r = tl.load(f2r_ptr + b[:, None] * N2 + b[None, :])
    f2i = tl.load(f2i_ptr + b[:, None] * N2 + b[None, :])
    ar, ai = _middle(ar, ai, f2r, f2i, N1, N2, N3, PRECISION)
    t2r = tl.load(t2r_ptr + j)[None, :]  # the same for every k1
    t2i = tl.load(t2i_ptr + j)[None, :]
    ar, ai = ar * t2r - ai * t2i, ar * t2i + ai * t2r
    c = tl.arange(0, N3)
    f3r = tl.load(f3r_ptr + c[:, None] * N3 + c[None, :])
    f3i = tl.load(f3i_ptr + c[:, None] * N3 + c[None, :])
    er, ei = _cdot(
        tl.reshape(ar, (N1 * N2, N3)), tl.reshape(ai, (N1 * N2, N3)), f3r, f3i, PRECISION
    )
    spectrum = channel * N1 * M + tl.arange(0, N1 * N2)[:, None] * N3 + c[None, :]
    kr = tl.load(kr_ptr + spectrum)
    ki = tl.load(ki_ptr + spectrum)
    er, ei = er * kr - ei * ki, er * ki + ei * kr
    # the inverse: the same steps backwards with conjugate matrices and twiddles
    gr, gi = _cdot(er, ei, f3r, -f3i, PRECISION)
    gr, gi = tl.reshape(gr, (N1, M)), tl.reshape(gi, (N1, M))
    gr, gi = gr * t2r + gi * t2i, gi * t2r - gr * t2i
    gr, gi = _middle(gr, gi, f2r, -f2i, N1, N2, N3, PRECISION)
    gr, gi = gr * t1r + gi * t1i, gi * t1r - gr * t1i
    skip = tl.load(skip_ptr + channel)
    _last_stage(
        out_ptr, gate_ptr, row, channels, gate_batch_stride, length, gr, gi, x, skip,
        f1r_ptr, f1i_ptr, inv_n, N1, M, HAS_GATE, PRECISION,
    )  # fmt: skip


def interpreted() -> bool:
    """Whether Triton runs its kernels in its CPU interpreter (TRITON_INTERPRET=1, set before
    triton is imported)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def fft_factors(n: int) -> tuple[int, int]:
    """n = n1 n2 for the two-stage kernel, both powers of two, n1 <= n2 and n1 >= 32."""
    if n < MIN_FFT or n & (n - 1):
        raise ValueError(f"the FFT size must be a power of two >= {MIN_FFT}, got {n}")
    n1 = max(2 ** (int(math.log2(n)) // 2), 32)
    return n1, n // n1


def fft_factors3(n: int) -> tuple[int, int, int]:
    """n = n1 n2 n3 for the three-stage kernel: n1 = 32 (16 rows of signal in its padded half),
    n2 <= n3, both at least 16 (`tl.dot`'s smallest side)."""
    if n < MIN_FFT3 or n & (n - 1):
        raise ValueError(f"the three-stage FFT size must be a power of two >= {MIN_FFT3}, got {n}")
    m = n // 32
    n2 = max(16, 2 ** (int(math.log2(m)) // 2))
    return 32, n2, m // n2


def fft_length(length: int) -> int:
    """The FFT size for signals of `length` steps: the next power of two >= 2 L, at least 2048."""
    return max(2 ** math.ceil(math.log2(2 * length)), MIN_FFT)


def supports(length: int) -> bool:
    """Whether signals of `length` steps convolve faster here than by cuFFT (measured: FFT sizes
    2048 to 8192, L from 513 to 4096; shorter ones are launch-bound, longer ones lose or do not
    build)."""
    return 512 < length <= MAX_FFT // 2


def _dft(n: int) -> Tensor:
    idx = torch.arange(n, dtype=torch.float64)
    return torch.exp(-2j * math.pi * torch.outer(idx, idx) / n)


def _pair(z: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    return z.real.float().contiguous().to(device), z.imag.float().contiguous().to(device)


def make_plan(k: Tensor, length: int, stages: int | None = None) -> dict:
    """The constants of the convolution with filters k [C, Lk] over signals of `length` steps: the
    DFT matrices, the twiddles and each filter's spectrum in the kernel's permuted layout. Two
    stages below n = 8192, three from there (`stages` overrides)."""
    n = fft_length(length)
    stages = stages or (3 if n >= MIN_FFT3 else 2)
    spectrum = torch.fft.fft(k.double()[:, :length], n=n)  # X[k1 + n1 k2 (+ n1 n2 k3)]
    channels, device = k.shape[0], k.device
    if stages == 2:
        n1, n2 = fft_factors(n)
        rows = torch.arange(n1, dtype=torch.float64)[:, None]
        cols = torch.arange(n2, dtype=torch.float64)[None, :]
        return {
            "n": n,
            "sizes": {"N1": n1, "N2": n2},
            "tables": [
                _pair(spectrum.reshape(channels, n2, n1).transpose(1, 2), device),
                _pair(_dft(n1), device),
                _pair(_dft(n2), device),
                _pair(torch.exp(-2j * math.pi * rows * cols / n), device),
            ],
        }
    n1, n2, n3 = fft_factors3(n)
    m = n2 * n3
    permuted = spectrum.reshape(channels, n3, n2, n1).permute(0, 3, 2, 1)
    rows, cols = torch.arange(n1, dtype=torch.float64), torch.arange(m, dtype=torch.float64)
    k2, c = torch.arange(n2, dtype=torch.float64), torch.arange(n3, dtype=torch.float64)
    return {
        "n": n,
        "sizes": {"N1": n1, "N2": n2, "N3": n3},
        "tables": [
            _pair(permuted.reshape(channels, n1 * n2, n3), device),
            _pair(_dft(n1), device),
            _pair(_dft(n2), device),
            _pair(_dft(n3), device),
            _pair(torch.exp(-2j * math.pi * torch.outer(rows, cols) / n), device),
            _pair(torch.exp(-2j * math.pi * torch.outer(k2, c) / m).reshape(-1), device),
        ],
    }


def default_warps(sizes: dict[str, int]) -> int:
    """Warps a program, as the H100 sweep measured them (monarch_h100.json): 4 for two-stage tiles
    up to 64 x 128 (at 4K: 0.37 ms against 0.52 with 8), 8 otherwise (8K, two stages: 0.53 ms
    against 1.47 with 4 and 2.62 with 16; three stages, 4K: 0.093 against 0.136 with 4; 8K: 0.32
    against 1.19 with 4 and 0.36 with 16)."""
    return 4 if len(sizes) == 2 and math.prod(sizes.values()) <= 8192 else 8


def causal_conv(
    u: Tensor,
    plan: dict,
    skip: Tensor,
    gate: Tensor | None = None,
    precision: str | None = None,
    num_warps: int | None = None,
) -> Tensor:
    """gate * ((k * u)[:L] + D u), float32 [B, C, L], for u [B, C, L] (contiguous), `make_plan(k,
    L)`, the skip D [C] and a gate [B, C, L] (any batch stride; None: no gate). `precision`: "tf32"
    or "ieee" (default: tf32 for 16-bit u, ieee for float32)."""
    batch, channels, length = u.shape
    if gate is not None and (gate.shape != u.shape or gate.stride()[1:] != (length, 1)):
        raise ValueError(
            f"the gate must have u's shape {tuple(u.shape)} with contiguous rows, got shape "
            f"{tuple(gate.shape)} and strides {gate.stride()}"
        )
    if precision is None:
        precision = "ieee" if u.dtype == torch.float32 else "tf32"
    rows = u.contiguous().reshape(batch * channels, length)
    out = torch.empty(rows.shape, dtype=torch.float32, device=u.device)
    kernel = _conv2_kernel if len(plan["sizes"]) == 2 else _conv3_kernel
    kernel[(batch * channels,)](
        rows,
        out,
        rows if gate is None else gate,
        skip.float().contiguous(),
        *(part for pair in plan["tables"] for part in pair),
        length,
        channels,
        0 if gate is None else gate.stride(0),
        1.0 / plan["n"],
        **plan["sizes"],
        HAS_GATE=gate is not None,
        PRECISION=precision,
        num_warps=num_warps or default_warps(plan["sizes"]),
    )
    return out.reshape(batch, channels, length)
