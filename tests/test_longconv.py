"""The fused training path: the same function and gradients as autograd through the plain
recurrence, one autograd node, and the cases where it steps aside."""

import shutil
from collections import Counter

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from hyena_lite import HyenaOperator, longconv
from hyena_lite.longconv import Recurrence, short_conv, trains_fused

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CPP = pytest.mark.skipif(
    not any(shutil.which(name) for name in ("g++", "clang++", "c++")),
    reason="torch.compile's CPU backend (inductor) needs a C++ compiler",
)


def _grads(op: HyenaOperator, u: torch.Tensor, fast: bool) -> tuple[torch.Tensor, ...]:
    """Output and gradients of (output squared).sum() for u and every parameter."""
    op.fast = fast
    u = u.detach().requires_grad_(True)
    y = op(u)
    return (y, *torch.autograd.grad(y.square().sum(), [u, *op.parameters()]))


@pytest.mark.parametrize("taps", [7, 16])  # the sequence length, or the FFT size (zero-padded)
def test_recurrence_gradients_pass_gradcheck(taps: int) -> None:
    torch.manual_seed(0)
    mixed = torch.randn(2, 9, 7, dtype=torch.float64, requires_grad=True)  # 2 gates and v
    k = torch.randn(2, 3, 7, dtype=torch.float64)
    k = torch.nn.functional.pad(k, (0, taps - 7)).requires_grad_(True)
    skips = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(Recurrence.apply, (mixed, k, skips))


@CPP
@pytest.mark.parametrize("taps", [7, 16])
def test_recurrence_with_compiled_kernels_passes_gradcheck(
    monkeypatch: pytest.MonkeyPatch, taps: int
) -> None:
    """`fused`: the element-wise work between the FFTs compiled; the same function and
    gradients."""
    torch.manual_seed(1)
    mixed = torch.randn(2, 9, 7, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 3, 7, dtype=torch.float64)
    k = torch.nn.functional.pad(k, (0, taps - 7)).requires_grad_(True)
    skips = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    out = Recurrence.apply(mixed, k, skips, True)
    assert torch.allclose(out, Recurrence.apply(mixed, k, skips, False), atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda m, f, d: Recurrence.apply(m, f, d, True), (mixed, k, skips)
    )


def test_recurrence_takes_padded_filters_alike_and_refuses_other_lengths() -> None:
    torch.manual_seed(0)
    mixed, k, skips = torch.randn(2, 9, 7), torch.randn(2, 3, 7), torch.randn(2, 3)
    padded = torch.nn.functional.pad(k, (0, 9)).requires_grad_(True)
    k.requires_grad_(True)
    out, out_padded = Recurrence.apply(mixed, k, skips), Recurrence.apply(mixed, padded, skips)
    assert torch.allclose(out, out_padded, atol=1e-6)
    grad = torch.randn_like(out)
    (d_k,), (d_padded,) = (
        torch.autograd.grad(y, [x], grad) for y, x in ((out, k), (out_padded, padded))
    )
    assert torch.allclose(d_padded[..., :7], d_k, atol=1e-5)
    with pytest.raises(ValueError, match="give it the sequence length 7, or 16"):
        Recurrence.apply(mixed, k[..., :5], skips)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("length", [1, 5, 33, 64])
def test_fused_training_equals_plain_path(order: int, length: int) -> None:
    torch.manual_seed(order)
    op = HyenaOperator(8, 64, order=order, filter_order=16)
    u = torch.randn(3, length, 8)
    fused, plain = _grads(op, u, fast=True), _grads(op, u, fast=False)
    for got, want in zip(fused, plain, strict=True):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()


def test_operator_training_forward_is_one_autograd_node() -> None:
    op = HyenaOperator(8, 32, order=3, filter_order=16)
    y = op(torch.randn(2, 16, 8, requires_grad=True))
    seen, stack = set(), [y.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(f for f, _ in node.next_functions)
    names = {type(node).__name__ for node in seen}
    assert "RecurrenceBackward" in names
    assert not any(name.startswith("FftC2R") for name in names)  # no FFT recorded by autograd


def test_short_conv_equals_depthwise_conv1d() -> None:
    torch.manual_seed(0)
    conv = nn.Conv1d(6, 6, 3, groups=6, padding=2)
    z = torch.randn(2, 6, 11)
    assert torch.allclose(short_conv(z, conv.weight, conv.bias), conv(z)[..., :11], atol=1e-6)
    assert torch.allclose(
        short_conv(z, conv.weight, None), conv(z)[..., :11] - conv.bias[:, None], atol=1e-6
    )
    z16 = z.bfloat16()
    assert short_conv(z16, conv.weight, conv.bias).dtype == torch.bfloat16


def test_filters_without_bias_train_fused() -> None:
    torch.manual_seed(0)
    op = HyenaOperator(8, 32, filter_order=16, bias=False)
    u = torch.randn(2, 20, 8)
    for got, want in zip(_grads(op, u, True), _grads(op, u, False), strict=True):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


def test_dropout_and_the_switch_fall_back_to_the_plain_path() -> None:
    op = HyenaOperator(8, 32, filter_order=16, dropout=0.1)
    assert not trains_fused(op.train()) and trains_fused(op.eval())
    op.fastpath.fused_training = False
    assert not trains_fused(op)


def test_autocast_bfloat16_stays_close_to_plain_path() -> None:
    torch.manual_seed(0)
    op = HyenaOperator(16, 64, filter_order=16)
    u = torch.randn(2, 64, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused, plain = _grads(op, u, True), _grads(op, u, False)
    for got, want in zip(fused, plain, strict=True):
        assert (got.float() - want.float()).norm() / want.float().norm() < 3e-2


def _compiled_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the training path compile its kernels on the CPU too (inductor's C++ backend), as it
    does on CUDA."""
    monkeypatch.setattr(longconv, "_compiles", lambda op, u: True)


@CPP
@pytest.mark.parametrize(("order", "batch", "length"), [(2, 3, 33), (3, 1, 64)])
def test_compiled_kernels_equal_plain_path(
    monkeypatch: pytest.MonkeyPatch, order: int, batch: int, length: int
) -> None:
    _compiled_everywhere(monkeypatch)
    torch.manual_seed(order)
    op = HyenaOperator(8, 64, order=order, filter_order=16)
    u = torch.randn(batch, length, 8)
    fused, plain = _grads(op, u, fast=True), _grads(op, u, fast=False)
    for got, want in zip(fused, plain, strict=True):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()


def _passes(op: HyenaOperator, u: torch.Tensor) -> Counter:
    """The element-wise and FFT work of one forward + backward: top-level aten operators run
    eagerly, and the kernels of compiled code (inductor's C++ kernels, made visible to the
    profiler), counted by name."""
    u = u.detach().requires_grad_(True)
    torch._dynamo.reset()  # compiled anew below, with kernels the profiler sees
    with torch._inductor.config.patch({"cpp.enable_kernel_profile": True}):
        op(u).sum().backward()  # compiles
        op.zero_grad(set_to_none=True)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            op(u).sum().backward()
    op.zero_grad(set_to_none=True)
    counts: Counter = Counter()
    for event in prof.events():
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if "cpp_fused" in event.name:
            counts["compiled kernel"] += 1
        elif event.name.startswith("aten::") and parent is None:
            counts[event.name] += 1
    return counts


@CPP
def test_compiled_kernels_cut_the_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    op = HyenaOperator(16, 64, filter_order=16)
    u = torch.randn(2, 64, 16)
    op.fastpath.training_kernels = False
    _compiled_everywhere(monkeypatch)  # the short filter compiled, as on CUDA
    before = _passes(op, u)
    op.fastpath.training_kernels = True
    after = _passes(op, u)
    element_wise = ("aten::mul", "aten::add", "aten::addcmul", "aten::copy_", "aten::to")
    eager_before, eager_after = (sum(c[name] for name in element_wise) for c in (before, after))
    assert eager_after <= 8 < 40 < eager_before  # measured: 69 before, 4 after
    assert "aten::constant_pad_nd" not in after and "aten::pad" not in after
    assert after["compiled kernel"] > before["compiled kernel"]


@CUDA
@pytest.mark.parametrize("kernels", [True, False])
def test_fused_training_on_cuda_in_bfloat16_matches_plain(kernels: bool) -> None:
    torch.manual_seed(0)
    op = HyenaOperator(64, 512, filter_order=16).cuda().bfloat16()
    op.fastpath.training_kernels = kernels
    u = torch.randn(2, 512, 64, device="cuda", dtype=torch.bfloat16)
    for got, want in zip(_grads(op, u, True), _grads(op, u, False), strict=True):
        assert (got.float() - want.float()).norm() / want.float().norm() < 3e-2


@CUDA
@pytest.mark.parametrize(("batch", "length"), [(1, 300), (3, 512)])
def test_compiled_kernels_on_cuda_in_float32_equal_plain(
    monkeypatch: pytest.MonkeyPatch, batch: int, length: int
) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the plain path's Conv1d
    torch.manual_seed(0)
    op = HyenaOperator(64, 512, order=3, filter_order=16).cuda()
    u = torch.randn(batch, length, 64, device="cuda")
    for got, want in zip(_grads(op, u, True), _grads(op, u, False), strict=True):
        assert (got - want).norm() / want.norm() < 1e-4
