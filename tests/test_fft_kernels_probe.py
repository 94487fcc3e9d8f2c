"""The torch.fft kernels probe (scripts/fft_kernels_probe.py): its packed half-size inverse equals
the unnormalised inverse real FFT it was timed against, and it refuses to run without CUDA."""

import pytest
import torch

from hyena_lite.packed_inverse import packed_inverse


@pytest.mark.parametrize("n", [2, 16, 64])
def test_packed_inverse_of_the_product_equals_irfft(load_script, n: int) -> None:
    probe = load_script("fft_kernels_probe")
    torch.manual_seed(n)
    s, k = (torch.fft.rfft(torch.randn(2, 3, n, dtype=torch.float64)) for _ in range(2))
    packed = probe.packed_product(torch.view_as_real(s), torch.view_as_real(k))
    want = torch.fft.irfft(s * k, n=n, norm="forward")
    got = packed_inverse(torch.view_as_complex(packed))
    assert torch.allclose(got, want, atol=1e-11, rtol=0)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)
def test_refuses_without_cuda(load_script, tmp_path) -> None:
    probe = load_script("fft_kernels_probe")
    with pytest.raises(SystemExit) as stop:
        probe.main(["--out", str(tmp_path / "out.json")])
    assert stop.value.code == 2 and not (tmp_path / "out.json").exists()
