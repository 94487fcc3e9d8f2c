"""The matrix-product FFT convolution probe (scripts/monarch_fftconv_probe.py): its exactness check
of hyena_lite.monarch_conv's kernels (Triton's CPU interpreter) and its cuFFT baseline."""

import torch

from hyena_lite import monarch_conv
from hyena_lite.fftconv import fftconv


def test_the_check_and_the_baseline_equal_fftconv(load_script) -> None:
    probe = load_script("monarch_fftconv_probe")
    assert probe.check([300, 1024, 2048]) < 1e-5  # lengths that pad, fill n / 2, and n1 = 64
    assert probe.check([3000], stages=3) < 1e-5
    torch.manual_seed(1)
    u, k, skip = torch.randn(1, 4, 700), torch.randn(4, 700), torch.randn(4)
    n = monarch_conv.fft_length(700)
    baseline = probe.cufft_conv(u, torch.fft.rfft(k, n=n), skip, n)
    assert torch.allclose(baseline, fftconv(u, k, skip), atol=1e-4, rtol=1e-4)
