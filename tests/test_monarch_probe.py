"""The matrix-product FFT convolution probe (scripts/monarch_fftconv_probe.py): the same function as
the library's FFT convolution, in Triton's CPU interpreter; its cuFFT baseline too."""

import pytest
import torch

from hyena_lite.fftconv import fftconv


def test_kernel_and_baseline_equal_fftconv(load_script) -> None:
    probe = load_script("monarch_fftconv_probe")
    assert probe.check([300, 1024, 2048]) < 1e-5  # lengths that pad, fill n / 2, and n1 = 64
    torch.manual_seed(1)
    u, k, skip = torch.randn(1, 4, 700), torch.randn(4, 700), torch.randn(4)
    n = probe.make_plan(k, 700)["n"]
    baseline = probe.cufft_conv(u, torch.fft.rfft(k, n=n), skip, n)
    assert torch.allclose(baseline, fftconv(u, k, skip), atol=1e-4, rtol=1e-4)


def test_fft_sizes_are_split_into_powers_of_two(load_script) -> None:
    probe = load_script("monarch_fftconv_probe")
    assert probe.fft_factors(2048) == (32, 64) and probe.fft_factors(8192) == (64, 128)
    with pytest.raises(ValueError, match="power of two >= 2048"):
        probe.fft_factors(3072)


def test_warps_are_those_the_h100_sweep_chose(load_script) -> None:
    probe = load_script("monarch_fftconv_probe")
    assert probe.default_warps(32, 64) == 4 and probe.default_warps(64, 128) == 4  # two stages
    assert probe.default_warps(128, 128) == 8 and probe.default_warps(128, 256) == 8
    assert probe.default_warps(32, 256, stages=3) == 8  # three stages: 8 at 4K and 8K


def test_three_stage_kernel_equals_fftconv(load_script) -> None:
    probe = load_script("monarch_fftconv_probe")
    assert probe.check([3000, 4096], stages=3) < 1e-5  # padded, and n / 2 filled: 32 x 16 x 16
    assert probe.fft_factors3(8192) == (32, 16, 16) and probe.fft_factors3(32768) == (32, 32, 32)
    assert probe.fft_factors3(16384) == (32, 16, 32)
    with pytest.raises(ValueError, match="power of two >= 8192"):
        probe.fft_factors3(4096)
