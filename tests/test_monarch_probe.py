"""The matrix-product FFT convolution probe (scripts/monarch_fftconv_probe.py): its exactness check
of hyena_lite.monarch_conv's kernels (Triton's CPU interpreter), its cuFFT baseline, and its rows
for hyena_lite.toeplitz_conv's tile shapes."""

from types import SimpleNamespace

import torch

from hyena_lite import monarch_conv
from hyena_lite.fftconv import fftconv
from hyena_lite.timing import Timing


def test_the_check_and_the_baseline_equal_fftconv(load_script) -> None:
    probe = load_script("monarch_fftconv_probe")
    assert probe.check([300, 1024, 2048]) < 1e-5  # lengths that pad, fill n / 2, and n1 = 64
    assert probe.check([3000], stages=3) < 1e-5
    torch.manual_seed(1)
    u, k, skip = torch.randn(1, 4, 700), torch.randn(4, 700), torch.randn(4)
    n = monarch_conv.fft_length(700)
    baseline = probe.cufft_conv(u, torch.fft.rfft(k, n=n), skip, n)
    assert torch.allclose(baseline, fftconv(u, k, skip), atol=1e-4, rtol=1e-4)


def test_a_toeplitz_shape_is_timed_as_the_fast_path_runs_it_or_its_error_kept(
    load_script, monkeypatch
) -> None:
    probe = load_script("monarch_fftconv_probe")
    calls = []

    def replayed(fn, device):  # the interpreter has no CUDA graphs: replay is the call itself
        return SimpleNamespace(replay=fn), None

    def timed(fn):
        calls.append(fn())
        return Timing(median_ms=1.0, iqr_ms=0.1, calls=1, blocks=1)

    monkeypatch.setattr(probe, "record", replayed)
    monkeypatch.setattr(probe, "time_call", timed)
    torch.manual_seed(0)
    u, k, skip = torch.randn(1, 2, 200), torch.randn(2, 200) / 200**0.5, torch.randn(2)
    row = probe._toeplitz_timed(u, k, skip, fftconv(u, k, skip), 32, 16, 4, "bf16")
    assert calls[0].dtype == torch.bfloat16  # a bf16 signal in, bf16 out, as the fast path
    assert 0 < row["toeplitz_b32_r16_w4_bf16_rel_err"] < 1e-2
    assert row["toeplitz_b32_r16_w4_bf16_graph_ms"] == 1.0
    bad = probe._toeplitz_timed(u, k, skip, fftconv(u, k, skip), 48, 16, 4, "bf16")
    assert "powers of two" in bad["toeplitz_b48_r16_w4_bf16_error"]
