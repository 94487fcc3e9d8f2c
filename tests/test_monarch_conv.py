"""hyena_lite.monarch_conv: the matrix-product causal convolution (two and three stages) equals
fftconv with and without its fused gate, in Triton's CPU interpreter, and refuses what it cannot
take (the operator's fast path with it: tests/test_toeplitz_conv.py, with the direct kernel's)."""

import pytest
import torch

from hyena_lite import monarch_conv
from hyena_lite.fftconv import fftconv
from tests.triton_device import DEVICE, needs_triton, relative

pytestmark = needs_triton


@pytest.mark.parametrize(("length", "stages"), [(600, 2), (2048, 2), (3000, 3), (4096, 3)])
def test_the_kernels_equal_fftconv_with_and_without_the_gate(length, stages):
    torch.manual_seed(0)
    u, k = torch.randn(2, 3, length, device=DEVICE), torch.randn(3, length, device=DEVICE)
    k, skip = k / length**0.5, torch.randn(3, device=DEVICE)
    gate = torch.randn(2, 9, length, device=DEVICE)[:, 3:6]  # rows contiguous, batch stride 9 L
    plan = monarch_conv.make_plan(k, length)
    assert len(plan["sizes"]) == stages
    want = fftconv(u, k, skip)
    assert relative(monarch_conv.causal_conv(u, plan, skip, precision="ieee"), want) < 1e-5
    gated = monarch_conv.causal_conv(u, plan, skip, gate=gate, precision="ieee")
    assert gated.dtype == torch.float32 and relative(gated, gate * want) < 1e-5


def test_fft_sizes_split_into_powers_of_two_and_bad_sizes_are_named():
    assert monarch_conv.fft_factors(2048) == (32, 64) and monarch_conv.fft_factors(4096) == (64, 64)
    assert monarch_conv.fft_factors3(8192) == (32, 16, 16)
    assert monarch_conv.fft_factors3(32768) == (32, 32, 32)
    with pytest.raises(ValueError, match="power of two >= 2048"):
        monarch_conv.fft_factors(3072)
    with pytest.raises(ValueError, match="power of two >= 8192"):
        monarch_conv.make_plan(torch.randn(2, 600), 600, stages=3)
    assert [monarch_conv.supports(n) for n in (512, 513, 4096, 4097)] == [False, True, True, False]
    assert monarch_conv.default_warps({"N1": 64, "N2": 64}) == 4  # as the H100 sweep chose
    assert monarch_conv.default_warps({"N1": 32, "N2": 16, "N3": 16}) == 8


def test_a_gate_of_another_shape_is_refused():
    u, k = torch.randn(1, 2, 600), torch.randn(2, 600)
    plan = monarch_conv.make_plan(k, 600)
    with pytest.raises(ValueError, match="the gate must have u's shape"):
        monarch_conv.causal_conv(u, plan, torch.zeros(2), gate=torch.randn(1, 2, 600, 2)[..., 0])
