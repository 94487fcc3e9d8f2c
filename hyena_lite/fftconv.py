"""Causal long convolution: by FFT in O(L log L), and a direct O(L^2) reference for tests and
teaching.

Both take u of shape [B, C, L] (channels first), a filter k of shape [C, Lk] or [B, C, Lk] and an
optional skip D of shape [C], and return y[b, c, t] = sum_{s<=t} k[c, s] u[b, c, t-s] + D[c] u[b, c,
t]. Taps of k beyond L cannot reach any output and are ignored; a shorter k acts as if zero-padded.
Both compute in float32 (float64 for float64 inputs) and return u's dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor


def fft_size(length: int) -> int:
    """The FFT length used for sequences of `length`: the next power of two >= 2 * length, so
    nothing wraps. Taught in chapter 3."""
    if length < 1:
        raise ValueError(f"sequence length must be at least 1, got {length}")
    return 1 << (2 * length - 1).bit_length()


def _compute_dtype(u: Tensor) -> torch.dtype:
    """float32 for 16- and 32-bit inputs (FFTs in fp16/bf16 overflow or are unsupported), float64
    for float64."""
    return torch.promote_types(u.dtype, torch.float32)


def _check(u: Tensor, k: Tensor, D: Tensor | None) -> None:
    """Raise ValueError with what was expected when the shapes of u, k or D do not fit together
    (TypeError when one is not floating point: an integer convolution would be rounded silently)."""
    for name, t in (("u", u), ("k", k), ("D", D)):
        if t is not None and not t.is_floating_point():
            raise TypeError(
                f"{name} has dtype {t.dtype}; the convolution needs floating-point tensors: "
                f"pass {name}.float()"
            )
    if u.dim() != 3:
        raise ValueError(
            f"u must have shape [batch, channels, length] (channels first), got {tuple(u.shape)}"
        )
    batch, channels, length = u.shape
    if length < 1:
        raise ValueError(
            f"u has an empty sequence (shape {tuple(u.shape)}); the length must be at least 1"
        )
    if (
        k.dim() not in (2, 3)
        or k.shape[-2] != channels
        or (k.dim() == 3 and k.shape[0] not in (1, batch))
    ):
        raise ValueError(
            f"k must have shape [channels, length] or [batch, channels, length] matching u "
            f"{tuple(u.shape)}, "
            f"got {tuple(k.shape)}"
        )
    if D is not None and tuple(D.shape) != (channels,):
        raise ValueError(f"D must have shape [channels] = ({channels},), got {tuple(D.shape)}")


def fftconv(u: Tensor, k: Tensor, D: Tensor | None = None) -> Tensor:
    """Causal convolution of each channel of u with its filter k (+ D * u), by FFT in float32;
    returns u's dtype. Taught in chapter 3."""
    _check(u, k, D)
    if u.numel() == 0:  # an empty batch: nothing to convolve (FFT libraries refuse it)
        return torch.zeros_like(u)
    length, dtype = u.shape[-1], _compute_dtype(u)
    n = fft_size(length)
    u_wide = u.to(dtype)
    k_f = torch.fft.rfft(k[..., :length].to(dtype), n=n)
    u_f = torch.fft.rfft(u_wide, n=n)
    y = torch.fft.irfft(u_f * k_f, n=n)[..., :length]
    if D is not None:
        y = y + u_wide * D.to(dtype).unsqueeze(-1)
    return y.to(u.dtype)


def _packed(a_re: Tensor, a_im: Tensor, b_re: Tensor, b_im: Tensor) -> Tensor:
    """A + B + i e^(i pi k / m) (A - B) for k = 0 .. m-1, as a real view [..., m, 2]."""
    m = a_re.shape[-1]
    wide = torch.promote_types(a_re.dtype, torch.float32)
    angle = torch.arange(m, device=a_re.device, dtype=wide) * (torch.pi / m)
    c, s = torch.cos(angle), torch.sin(angle)  # i e^(i angle) (d) = -(c d_im + s d_re) + i (..)
    d_re, d_im = a_re - b_re, a_im - b_im
    re, im = a_re + b_re - c * d_im - s * d_re, a_im + b_im + c * d_re - s * d_im
    return torch.stack((re, im), -1).to(a_re.dtype)


def packed_spectrum(p: Tensor) -> Tensor:
    """The spectrum of a real signal of n = 2m steps, as real view p [..., m + 1, 2], packed into
    the m-point complex spectrum (real view [..., m, 2]) whose unnormalised inverse FFT, read as n
    reals, is `irfft(p, n, norm="forward")`: even steps in the real parts, odd in the imaginary.
    With A = p[k] and B = conj(p[m - k]) that is A + B + i e^(i pi k / m) (A - B). On CUDA
    torch.fft's irfft copies its input first (cuFFT's complex-to-real transform overwrites it); a
    complex inverse does not. Taught in chapter 9."""
    m = p.shape[-2] - 1
    return _packed(p[..., :m, 0], p[..., :m, 1], p[..., 1:, 0].flip(-1), -p[..., 1:, 1].flip(-1))


def _product(s: Tensor, k: Tensor, sign: float) -> tuple[Tensor, Tensor]:
    """The real and imaginary parts of s * k (sign -1: s * conj(k)), from real views [..., 2]."""
    k_im = sign * k[..., 1]
    return s[..., 0] * k[..., 0] - s[..., 1] * k_im, s[..., 0] * k_im + s[..., 1] * k[..., 0]


def packed_product(s: Tensor, k: Tensor, conjugate: bool = False) -> Tensor:
    """`packed_spectrum` of the product s * k (with `conjugate`, s * conj(k)) of two spectra given
    as real views [..., m + 1, 2]. The mirrored term is computed from the mirrored inputs, so that
    a compiler fuses it all into one kernel that never stores the product."""
    m, sign = s.shape[-2] - 1, -1.0 if conjugate else 1.0
    a_re, a_im = _product(s[..., :m, :], k[..., :m, :], sign)
    b_re, b_im = _product(s[..., 1:, :].flip(-2), k[..., 1:, :].flip(-2), sign)
    return _packed(a_re, a_im, b_re, -b_im)


def packed_inverse(packed: Tensor) -> Tensor:
    """The n reals [..., n] of the unnormalised inverse FFT of `packed_spectrum`'s output
    [..., m, 2] (what `irfft(p, n, norm="forward")` returns), with no copy of the input."""
    spectrum = torch.view_as_complex(packed)
    return torch.view_as_real(torch.fft.ifft(spectrum, norm="forward")).flatten(-2)


def direct_conv(u: Tensor, k: Tensor, D: Tensor | None = None) -> Tensor:
    """The same causal convolution as `fftconv`, computed directly in O(L^2) (the reference).
    Taught in chapter 3."""
    _check(u, k, D)
    length, dtype = u.shape[-1], _compute_dtype(u)
    u_wide = u.to(dtype)
    taps = torch.zeros(*k.shape[:-1], length, dtype=dtype, device=k.device)
    used = min(length, k.shape[-1])
    taps[..., :used] = k[..., :used].to(dtype)
    lags = torch.arange(length, device=u.device)
    lag = lags[:, None] - lags[None, :]  # lag[t, s] = t - s
    toeplitz = taps[..., lag.clamp(min=0)] * (
        lag >= 0
    )  # [..., C, L, L]: T[c, t, s] = k[c, t - s], causal
    y = (toeplitz @ u_wide.unsqueeze(-1)).squeeze(-1)
    if D is not None:
        y = y + u_wide * D.to(dtype).unsqueeze(-1)
    return y.to(u.dtype)
