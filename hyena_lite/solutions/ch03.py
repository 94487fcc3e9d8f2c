"""Chapter 3's solutions: the FFT convolution and the smallest FFT length."""

from __future__ import annotations

import torch


def fftconv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution by FFT at length 2L (no wrap-around), keeping the first L outputs."""
    length = u.shape[-1]
    n = 2 * length
    spectrum = torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n)
    return torch.fft.irfft(spectrum, n=n)[..., :length]


def min_fft_size(length: int) -> int:
    """2L - 1: the linear convolution has 2L - 1 terms; a shorter period folds one back."""
    return 2 * length - 1
