"""Chapter 3's solutions: the FFT convolution and the smallest FFT length."""

from __future__ import annotations

import torch

from hyena_lite.fftconv import direct_conv


def fftconv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution by FFT at length 2L (no wrap-around), keeping the first L outputs."""
    length = u.shape[-1]
    n = 2 * length
    spectrum = torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n)
    return torch.fft.irfft(spectrum, n=n)[..., :length]


def min_fft_size(length: int) -> int:
    """2L - 1: the linear convolution has 2L - 1 terms; a shorter period folds one back."""
    return 2 * length - 1


def survivors() -> int:
    """1: output t of the circular convolution adds term t + L of the linear one, which exists
    (is not zero) for every t < L - 1; only the last output, t = L - 1, has none to add."""
    return 1


def catches_bug(conv) -> bool:
    """Compare with the direct convolution on random inputs of a few lengths; suspect_conv keeps
    the last L outputs of the padded convolution instead of the first L."""
    for length in (1, 7, 32):
        u, k = torch.randn(2, 3, length), torch.randn(3, length)
        reference = direct_conv(u, k)
        if not torch.allclose(conv(u, k), reference, atol=1e-4):
            return False
    return True
