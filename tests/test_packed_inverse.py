"""hyena_lite.packed_inverse: the one-pass packed product and its half-size inverse equal
`irfft` of the product (in Triton's interpreter on a CPU, on CUDA where present), refuse what they
cannot take, and, behind `FastPath.packed_inverse` (the default on CUDA), leave the operator's
forward and gradients unchanged."""

import pytest
import torch

from hyena_lite import HyenaOperator, fastpath, longconv
from hyena_lite.longconv import uses_packed_inverse
from hyena_lite.packed_inverse import packed_correlation, packed_inverse, packed_product
from tests.triton_device import DEVICE, needs_triton

pytestmark = needs_triton


@pytest.mark.parametrize("n", [2, 4, 64, 4096])  # 4096: more than one tile of bins
@pytest.mark.parametrize("conjugate", [False, True])
def test_packed_inverse_equals_irfft_of_the_product(n: int, conjugate: bool) -> None:
    torch.manual_seed(n)
    s = torch.fft.rfft(torch.randn(2, 3, n, device=DEVICE))
    k = torch.fft.rfft(torch.randn(3, n, device=DEVICE))
    want = torch.fft.irfft(s * (k.conj() if conjugate else k), n=n, norm="forward")
    got = packed_inverse(packed_product(s, k, conjugate))
    assert got.shape == want.shape and got.dtype == torch.float32
    error = (got - want).abs().max() / want.abs().max()
    assert error < 1e-5, error


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("n", [4, 4096])
def test_packed_correlation_is_the_filter_gradient_irfft(batch: int, n: int) -> None:
    torch.manual_seed(batch)
    a = torch.fft.rfft(torch.randn(batch, 5, n, device=DEVICE))
    b = torch.fft.rfft(torch.randn(batch, 5, n, device=DEVICE))
    want = torch.fft.irfft((a * b.conj()).sum(0) / n, n=n, norm="forward")
    out = torch.full((5, n // 2), float("nan"), dtype=torch.complex64, device=DEVICE)
    got = packed_inverse(packed_correlation(a, b, 1 / n, out))
    assert got.shape == want.shape
    error = (got - want).abs().max() / want.abs().max()
    assert error < 1e-5, error


def test_packed_correlation_refuses_what_it_cannot_take() -> None:
    a = torch.fft.rfft(torch.randn(2, 3, 16, device=DEVICE))
    with pytest.raises(TypeError, match="complex64"):
        packed_correlation(a, a.to(torch.complex128))
    with pytest.raises(ValueError, match="both be"):
        packed_correlation(a, a[:1])
    with pytest.raises(ValueError, match="out must be"):
        packed_correlation(a, a, out=torch.empty(3, 9, dtype=torch.complex64, device=DEVICE))
    odd = torch.fft.rfft(torch.randn(1, 3, 12, device=DEVICE))
    with pytest.raises(ValueError, match="power of two"):
        packed_correlation(odd, odd)


def test_packed_product_refuses_what_it_cannot_take() -> None:
    s = torch.fft.rfft(torch.randn(1, 3, 16, device=DEVICE))
    k = torch.fft.rfft(torch.randn(3, 16, device=DEVICE))
    with pytest.raises(TypeError, match="complex64"):
        packed_product(s.to(torch.complex128), k)
    with pytest.raises(ValueError, match="must match"):
        packed_product(s, k[:2])
    odd = torch.fft.rfft(torch.randn(3, 12, device=DEVICE))
    with pytest.raises(ValueError, match="power of two"):
        packed_product(odd[None], odd)


def _operator(order: int) -> HyenaOperator:
    torch.manual_seed(order)
    return HyenaOperator(8, 64, order=order, filter_order=16).to(DEVICE)


@pytest.mark.parametrize("order", [1, 2])
def test_operator_forward_with_packed_inverses_equals_the_plain_one(order: int) -> None:
    op = _operator(order)
    u = torch.randn(3, 40, 8, device=DEVICE)
    with torch.no_grad():
        want = fastpath.plain_forward(op, u)
        op.fastpath.packed_inverse = True
        assert uses_packed_inverse(op, u)
        got = fastpath._forward(op, u)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()


@pytest.mark.parametrize("order", [1, 3])
def test_training_with_packed_inverses_has_the_plain_gradients(order: int) -> None:
    op = _operator(order)
    u = torch.randn(2, 33, 8, device=DEVICE)

    def grads(packed: bool) -> list[torch.Tensor]:
        op.fastpath.packed_inverse = packed
        x = u.clone().requires_grad_(True)
        y = op(x)
        return [y, *torch.autograd.grad(y.square().sum(), [x, *op.parameters()])]

    for got, want in zip(grads(True), grads(False), strict=True):
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-3), (got - want).abs().max()


@pytest.mark.parametrize("conjugate", [False, True])
def test_the_recurrence_inverts_products_alike_packed_or_not(conjugate: bool) -> None:
    torch.manual_seed(2)
    s = torch.fft.rfft(torch.randn(2, 3, 32, device=DEVICE))
    k = torch.fft.rfft(torch.randn(3, 32, device=DEVICE))
    want = torch.fft.irfft(s * (k.conj() if conjugate else k), n=32, norm="forward")
    for packed in (False, True):
        got = longconv._product_inverse(s, k, 32, packed, conjugate=conjugate)
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


def test_packed_inverses_are_cudas_default_and_stay_out_of_torch_compile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    op, u = _operator(2), torch.randn(1, 16, 8, device=DEVICE)
    assert op.fastpath.packed_inverse is None  # the default: wherever CUDA runs the kernel
    assert uses_packed_inverse(op, u) == u.is_cuda  # the interpreter only when asked for
    op.fastpath.packed_inverse = True
    assert uses_packed_inverse(op, u)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not uses_packed_inverse(op, u)  # torch.compile traces the irfft path
    monkeypatch.undo()
    op.fastpath.packed_inverse = False
    assert not uses_packed_inverse(op, u)
    for value, setting in (("0", False), ("1", True), ("", None)):
        monkeypatch.setenv("HYENA_LITE_PACKED_INVERSE", value)
        assert fastpath.FastPath().packed_inverse is setting
