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
