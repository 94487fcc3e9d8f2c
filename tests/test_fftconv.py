"""The FFT causal convolution against its direct O(L^2) reference: values, causality, precision,
errors."""

import pytest
import torch

from hyena_lite import direct_conv, fftconv
from hyena_lite.fftconv import fft_size


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return (
        (got.double() - want.double()).abs().max() / want.double().abs().max().clamp(min=1e-12)
    ).item()


@pytest.mark.parametrize("length", [1, 2, 7, 16, 100, 257])
@pytest.mark.parametrize("with_skip", [False, True])
def test_fftconv_equals_direct_conv(length: int, with_skip: bool) -> None:
    gen = torch.Generator().manual_seed(length)
    u = torch.randn(3, 4, length, generator=gen)
    k = torch.randn(4, length, generator=gen)
    D = torch.randn(4, generator=gen) if with_skip else None
    assert _relative_error(fftconv(u, k, D), direct_conv(u, k, D)) <= 1e-4


def test_float64_inputs_are_computed_in_float64() -> None:
    gen = torch.Generator().manual_seed(2)
    u, k = (
        torch.randn(2, 3, 33, generator=gen, dtype=torch.float64),
        torch.randn(3, 33, generator=gen),
    )
    got, want = fftconv(u, k), direct_conv(u, k)
    assert got.dtype == want.dtype == torch.float64
    assert _relative_error(got, want) <= 1e-12


def test_direct_conv_is_the_causal_convolution_sum() -> None:
    gen = torch.Generator().manual_seed(0)
    u, k, D = (
        torch.randn(2, 3, 9, generator=gen),
        torch.randn(3, 9, generator=gen),
        torch.randn(3, generator=gen),
    )
    want = torch.zeros_like(u)
    for t in range(9):
        for s in range(t + 1):
            want[..., t] += k[:, s] * u[..., t - s]
    want += D[:, None] * u
    assert torch.allclose(direct_conv(u, k, D), want, atol=1e-5)


def test_per_example_filters_and_filter_lengths() -> None:
    gen = torch.Generator().manual_seed(1)
    u = torch.randn(2, 3, 20, generator=gen)
    k_batch = torch.randn(2, 3, 20, generator=gen)
    assert _relative_error(fftconv(u, k_batch), direct_conv(u, k_batch)) <= 1e-4
    for b in range(2):
        assert (
            _relative_error(fftconv(u[b : b + 1], k_batch[b]), fftconv(u, k_batch)[b : b + 1])
            <= 1e-5
        )
    long_k = torch.randn(3, 50, generator=gen)  # taps beyond L are ignored
    assert torch.allclose(fftconv(u, long_k), fftconv(u, long_k[:, :20]), atol=1e-5)
    short_k = torch.randn(3, 5, generator=gen)  # a shorter filter is zero-padded
    padded = torch.cat([short_k, torch.zeros(3, 15)], dim=-1)
    assert torch.allclose(fftconv(u, short_k), direct_conv(u, padded), atol=1e-4)


@pytest.mark.parametrize("length", [1, 5, 16, 1000])
def test_fft_size_pads_to_at_least_twice_the_length(length: int) -> None:
    n = fft_size(length)
    assert n >= 2 * length and n & (n - 1) == 0 and n < 4 * length


@pytest.mark.parametrize("t0", [0, 31, 63])
def test_fftconv_is_causal(t0: int) -> None:
    gen = torch.Generator().manual_seed(t0)
    u, k = torch.randn(2, 3, 64, generator=gen), torch.randn(3, 64, generator=gen)
    changed = u.clone()
    changed[..., t0] += 100.0
    before, after = fftconv(u, k), fftconv(changed, k)
    assert torch.allclose(
        before[..., :t0], after[..., :t0], atol=1e-4
    )  # every earlier output unchanged
    assert (
        before[..., t0] - after[..., t0]
    ).abs().min().item() > 1.0  # the change does reach step t0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_large_values_long_sequence(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    length = 8192
    u = (1e3 * torch.rand(2, 4, length, generator=gen)).to(
        dtype
    )  # sum(u) ~ 4e6: beyond fp16's 65504
    t = torch.arange(length, dtype=torch.float32)
    k = torch.exp(-t[None, :] / torch.tensor([[10.0], [100.0], [1000.0], [5000.0]]))
    k = k / k.sum(-1, keepdim=True)  # an averaging filter: outputs stay ~1e3
    D = torch.tensor([0.5, -0.5, 1.0, 0.1])
    got = fftconv(u, k, D)
    assert got.dtype == dtype
    assert torch.isfinite(got).all()
    want = fftconv(u.float(), k, D)
    assert _relative_error(got, want) <= 1e-2


@pytest.mark.parametrize(
    ("u_shape", "k_shape", "d_shape", "match"),
    [
        ((3, 8), (3, 8), None, r"u must have shape \[batch, channels, length\]"),
        ((2, 3, 8), (4, 8), None, r"k must have shape \[channels, length\]"),
        ((2, 3, 8), (5, 3, 8), None, r"k must have shape \[channels, length\]"),
        ((2, 3, 8), (3, 8), (4,), r"D must have shape \[channels\] = \(3,\)"),
        ((2, 3, 0), (3, 8), None, r"empty sequence"),
    ],
)
def test_errors_say_what_was_expected(u_shape, k_shape, d_shape, match) -> None:
    D = None if d_shape is None else torch.zeros(d_shape)
    for conv in (fftconv, direct_conv):
        with pytest.raises(ValueError, match=match):
            conv(torch.zeros(u_shape), torch.zeros(k_shape), D)
