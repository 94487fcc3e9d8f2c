"""An inverse real FFT with no copy of its input: the product of two spectra packed by one Triton
kernel into the half-size complex spectrum whose inverse complex FFT, read as reals, is the inverse
real FFT.

On CUDA, `torch.fft.irfft` copies its input first (cuFFT's complex-to-real transform overwrites
it): at L = 16K on an H100 the product of two spectra (102 µs), the copy (71 µs) and the transform
(112 µs) make each inverse of the Hyena recurrence (`fft_kernels_h100.json`). A real signal x of
n = 2m steps read as m complex numbers z_t = x_2t + i x_(2t+1) has the spectrum
Z_k = X_k + conj(X_(m-k)) + i e^(i pi k / m) (X_k - conj(X_(m-k))) (times 1/2), one element-wise
step from the real spectrum X, and a complex inverse FFT leaves its input alone. Each program of
`_packed_product` reads a tile of both spectra and the mirrored tile once and writes both tiles of
Z, so the product, the packing and the copy become one pass (torch.compile split the same
arithmetic into two kernels, slower than the copy: chapter 9). `packed_correlation` does the same
for a long filter's gradient in training (the batch's sum of one spectrum times another's
conjugate), so that its inverse copies nothing either: at 16K on an H100, 526 to 412 µs of kernel
time a training step (`profile_training_packed_grad_h100.json`). The default on CUDA through
`FastPath.packed_inverse`: on an H100 it took the Hyena block's training step at 16K from 4.36 to
4.11 ms and its forward from 1.19 to 1.02 (`training_packed_h100.json`,
`operator_packed_h100.json`). Runs on CUDA, or in Triton's interpreter on a CPU
(TRITON_INTERPRET=1, where the tests run it).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK = 1024  # bins of a tile (and of its mirror)


@triton.jit
def _times(sr, si, kr, ki, CONJUGATE: tl.constexpr):
    """(sr + i si)(kr + i ki), or with CONJUGATE times the conjugate of k."""
    if CONJUGATE:
        ki = -ki
    return sr * kr - si * ki, sr * ki + si * kr


@triton.jit
def _product_at(s_row, k_row, bins, valid, CONJUGATE: tl.constexpr):
    """The product of the two spectra's rows at `bins` (zero where not `valid`), in float32."""
    sr = tl.load(s_row + 2 * bins, mask=valid, other=0.0).to(tl.float32)
    si = tl.load(s_row + 2 * bins + 1, mask=valid, other=0.0).to(tl.float32)
    kr = tl.load(k_row + 2 * bins, mask=valid, other=0.0).to(tl.float32)
    ki = tl.load(k_row + 2 * bins + 1, mask=valid, other=0.0).to(tl.float32)
    return _times(sr, si, kr, ki, CONJUGATE)


@triton.jit
def _packed_bin(ar, ai, br, bi, k, m):
    """Twice Z_k from A = P_k and B = conj(P_(m-k)): A + B + i e^(i pi k / m) (A - B)."""
    angle = k.to(tl.float32) * (3.141592653589793 / m)
    c, s = tl.cos(angle), tl.sin(angle)
    dr, di = ar - br, ai - bi
    return ar + br - c * di - s * dr, ai + bi + c * dr - s * di


@triton.jit
def _store_packed(out_row, lr, li, hr, hi, low, high, valid, m):
    """Packs the product's bins `low` and their mirrors `high` = m - low into Z and stores both."""
    zr, zi = _packed_bin(lr, li, hr, -hi, low, m)  # Z_low: A = P_low, B = conj(P_high)
    tl.store(out_row + 2 * low, zr, mask=valid & (low < m))
    tl.store(out_row + 2 * low + 1, zi, mask=valid & (low < m))
    zr, zi = _packed_bin(hr, hi, lr, -li, high, m)  # Z_high: A = P_high, B = conj(P_low)
    tl.store(out_row + 2 * high, zr, mask=valid & (high < m))
    tl.store(out_row + 2 * high + 1, zi, mask=valid & (high < m))


@triton.jit
def _packed_product(
    s_ptr, k_ptr, out_ptr, filters, m, CONJUGATE: tl.constexpr, BLOCK: tl.constexpr
):
    """Row r of s [R, m + 1] (complex as real pairs) times row r % filters of k, packed into row r
    of out [R, m]: program (r, t) takes bins t BLOCK .. and their mirrors m - bin, up to m / 2."""
    row = tl.program_id(0)
    low = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = low <= m // 2
    high = m - low
    s_row = s_ptr + row.to(tl.int64) * (2 * (m + 1))
    k_row = k_ptr + (row % filters).to(tl.int64) * (2 * (m + 1))
    lr, li = _product_at(s_row, k_row, low, valid, CONJUGATE)
    hr, hi = _product_at(s_row, k_row, high, valid, CONJUGATE)
    _store_packed(out_ptr + row.to(tl.int64) * (2 * m), lr, li, hr, hi, low, high, valid, m)


@triton.jit
def _packed_correlation(a_ptr, b_ptr, out_ptr, channels, batch, m, scale, BLOCK: tl.constexpr):
    """Row c of out [C, m]: the sum over the batch of rows (batch, c) of a * conj(b) ([B, C, m + 1]
    each, complex as real pairs), times `scale`, packed; programs tile the bins as above."""
    channel = tl.program_id(0)
    low = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = low <= m // 2
    high = m - low
    lr = tl.zeros((BLOCK,), tl.float32)
    li, hr, hi = lr, lr, lr
    for b in range(batch):
        offset = (b * channels + channel).to(tl.int64) * (2 * (m + 1))
        pr, pi = _product_at(a_ptr + offset, b_ptr + offset, low, valid, True)
        lr, li = lr + pr, li + pi
        pr, pi = _product_at(a_ptr + offset, b_ptr + offset, high, valid, True)
        hr, hi = hr + pr, hi + pi
    out_row = out_ptr + channel.to(tl.int64) * (2 * m)
    _store_packed(out_row, lr * scale, li * scale, hr * scale, hi * scale, low, high, valid, m)


def _half_size(spectrum: Tensor) -> int:
    """m for a spectrum [..., m + 1] of a real signal of n = 2m steps, checked: a power of two."""
    m = spectrum.shape[-1] - 1
    if m < 1 or m & (m - 1):
        raise ValueError(f"the FFT size 2m must be a power of two, got m + 1 = {m + 1} bins")
    return m


def _complex64(*spectra: Tensor) -> None:
    """Refuses spectra that are not complex64 (the kernels read float32 pairs)."""
    if any(x.dtype != torch.complex64 for x in spectra):
        names = " and ".join(str(x.dtype) for x in spectra)
        raise TypeError(f"the packed kernels take complex64 spectra, got {names}")


def packed_product(spectrum: Tensor, filters: Tensor, conjugate: bool = False) -> Tensor:
    """spectrum [..., C, m + 1] times filters [C, m + 1] (complex64; with `conjugate`, times their
    conjugates), packed: complex64 [..., C, m] whose `packed_inverse` is
    `irfft(spectrum * filters, n=2m, norm="forward")`."""
    _complex64(spectrum, filters)
    if spectrum.shape[-2:] != filters.shape or filters.dim() != 2:
        raise ValueError(
            f"spectrum [..., C, m + 1] and filters [C, m + 1] must match in their last two "
            f"dimensions, got {tuple(spectrum.shape)} and {tuple(filters.shape)}"
        )
    channels, bins = filters.shape
    m = _half_size(filters)
    s = torch.view_as_real(spectrum.contiguous())
    k = torch.view_as_real(filters.contiguous())
    out = torch.empty(*spectrum.shape[:-1], m, 2, device=spectrum.device, dtype=torch.float32)
    rows = spectrum.numel() // bins
    grid = (rows, triton.cdiv(m // 2 + 1, BLOCK))
    _packed_product[grid](s, k, out, channels, m, CONJUGATE=conjugate, BLOCK=BLOCK)
    return torch.view_as_complex(out)


def packed_correlation(
    a: Tensor, b: Tensor, scale: float = 1.0, out: Tensor | None = None
) -> Tensor:
    """The sum over the batch of a * conj(b) times `scale` (a, b [B, C, m + 1], complex64), packed
    into out [C, m] (complex64; made when None): its `packed_inverse` is
    `irfft((a * b.conj()).sum(0) * scale, n=2m, norm="forward")`, a long filter's gradient in
    `hyena_lite.longconv.Recurrence`, with no copy of the spectrum before the inverse."""
    _complex64(a, b)
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(
            f"a and b must both be [B, C, m + 1], got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    batch, channels, _ = a.shape
    m = _half_size(a)
    if out is None:
        out = torch.empty(channels, m, dtype=torch.complex64, device=a.device)
    if out.shape != (channels, m) or out.dtype != torch.complex64 or not out.is_contiguous():
        raise ValueError(
            f"out must be a contiguous complex64 [C, m] = [{channels}, {m}], got "
            f"{out.dtype} {tuple(out.shape)}"
        )
    grid = (channels, triton.cdiv(m // 2 + 1, BLOCK))
    _packed_correlation[grid](
        torch.view_as_real(a.contiguous()),
        torch.view_as_real(b.contiguous()),
        torch.view_as_real(out),
        channels,
        batch,
        m,
        scale,
        BLOCK=BLOCK,
    )
    return out


def packed_inverse(packed: Tensor) -> Tensor:
    """The 2m reals [..., 2m] of the unnormalised inverse FFT of a packed spectrum [..., m]
    (complex): a complex inverse, which copies nothing first, read as interleaved reals."""
    return torch.view_as_real(torch.fft.ifft(packed, norm="forward")).flatten(-2)
