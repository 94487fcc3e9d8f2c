"""hyena_lite.toeplitz_conv: the direct block-Toeplitz causal convolution equals fftconv with and
without its fused gate (float32 operands exactly, bf16 ones within their rounding), also with a
raw gate whose short filter it applies; it is causal and refuses plans and gates of the wrong
shape. The operator's fast path with FastPath.toeplitz or FastPath.monarch equals the plain
forward and caches its plans; on a GPU, both agree with cuFFT in bf16 and replay as CUDA graphs."""

import pytest
import torch

from hyena_lite import toeplitz_conv
from hyena_lite.fastpath import fast_forward, monarch_plans, plain_forward, toeplitz_plans
from hyena_lite.fftconv import fftconv
from hyena_lite.longconv import short_conv
from hyena_lite.operator import HyenaOperator
from tests.triton_device import DEVICE, needs_triton, relative

pytestmark = needs_triton


@pytest.mark.parametrize(
    ("length", "block", "rows"),
    [(64, 64, 16), (100, 16, 16), (600, 16, 16), (1000, 32, 16)],  # 1 to 3 tiles, partial blocks
)
def test_the_kernel_equals_fftconv_with_and_without_the_gate(length, block, rows):
    torch.manual_seed(0)
    u, k = torch.randn(2, 3, length, device=DEVICE), torch.randn(3, length, device=DEVICE)
    k, skip = k / length**0.5, torch.randn(3, device=DEVICE)
    gate = torch.randn(2, 9, length, device=DEVICE)[:, 3:6]  # rows contiguous, batch stride 9 L
    want = fftconv(u, k, skip)
    exact = toeplitz_conv.make_plan(k, length, "ieee", block, rows)
    assert relative(toeplitz_conv.causal_conv(u, exact, skip), want) < 1e-5
    gated = toeplitz_conv.causal_conv(u, exact, skip, gate=gate)
    assert gated.dtype == torch.float32 and relative(gated, gate * want) < 1e-5
    rounded = toeplitz_conv.make_plan(k, length, "bf16", block, rows)
    copies = rounded["filters"]  # [C, 8, width]: copy s is copy 0 shifted s taps on
    assert copies.dtype == torch.bfloat16 and exact["filters"].shape[1] == 4
    assert torch.equal(copies[:, 3, :-3], copies[:, 0, 3:])
    assert torch.equal(copies[:, 0, block : block + length], k.bfloat16())
    got = toeplitz_conv.causal_conv(u, rounded, skip, gate=gate, out_dtype=torch.bfloat16)
    assert got.dtype == torch.bfloat16 and 1e-5 < relative(got.float(), gate * want) < 1e-2


def test_a_raw_gate_gets_its_short_filter_inside_the_kernel():
    torch.manual_seed(0)
    u, k = torch.randn(2, 3, 300, device=DEVICE), torch.randn(3, 300, device=DEVICE) / 300**0.5
    z = torch.randn(2, 9, 300, device=DEVICE)[:, 3:6]  # the in-projection's gate rows
    weight, in_bias, bias = (
        torch.randn(*shape, device=DEVICE) for shape in ((3, 1, 3), (3,), (3,))
    )
    skip = torch.randn(3, device=DEVICE)
    want = short_conv(z + in_bias[:, None], weight, bias) * fftconv(u, k, skip)
    plan = toeplitz_conv.make_plan(k, 300, "ieee", 32, 16)
    got = toeplitz_conv.causal_conv(u, plan, skip, gate=z, gate_filter=(weight, in_bias, bias))
    assert relative(got, want) < 1e-5


def test_the_output_depends_on_no_later_step_and_longer_filters_are_cut():
    torch.manual_seed(0)
    u, k = torch.randn(1, 2, 200, device=DEVICE), torch.randn(2, 300, device=DEVICE)
    plan = toeplitz_conv.make_plan(k, 200, "ieee", 32, 16)
    before = toeplitz_conv.causal_conv(u, plan, torch.ones(2, device=DEVICE))
    u[..., 150:] += 1.0  # a later change
    after = toeplitz_conv.causal_conv(u, plan, torch.ones(2, device=DEVICE))
    assert torch.equal(before[..., :150], after[..., :150])
    assert not torch.allclose(before[..., 150:], after[..., 150:])
    ones = torch.ones(2, device=DEVICE)
    assert relative(after, fftconv(u, k[:, :200], ones)) < 1e-5  # taps past L play no part


def test_bad_plans_and_gates_are_refused_with_what_to_do():
    k = torch.randn(2, 100)
    with pytest.raises(ValueError, match="precision must be one of"):
        toeplitz_conv.make_plan(k, 100, "fp8")
    with pytest.raises(ValueError, match="powers of two >= 16"):
        toeplitz_conv.make_plan(k, 100, "ieee", block=48)
    plan = toeplitz_conv.make_plan(k, 100, "ieee", 16, 16)
    with pytest.raises(ValueError, match=r"make_plan\(k, 90\)"):
        toeplitz_conv.causal_conv(torch.randn(1, 2, 90), plan, torch.zeros(2))
    with pytest.raises(ValueError, match="the gate must have u's shape"):
        gate = torch.randn(1, 2, 100, 2)[..., 0]
        toeplitz_conv.causal_conv(torch.randn(1, 2, 100), plan, torch.zeros(2), gate=gate)
    assert [toeplitz_conv.supports(n) for n in (0, 1, 8192, 8193)] == [False, True, True, False]


@pytest.mark.parametrize(("order", "length"), [(2, 700), (3, 2500)])
@pytest.mark.parametrize(
    ("kernel", "plans_of", "unsupported"),
    [("toeplitz", toeplitz_plans, 9000), ("monarch", monarch_plans, 300)],
)
def test_the_fast_path_with_a_kernel_equals_the_plain_forward(
    kernel, plans_of, unsupported, order, length
):
    torch.manual_seed(0)
    op = HyenaOperator(d_model=8, l_max=4096, order=order).eval().to(DEVICE)
    u = torch.randn(2, length, 8, device=DEVICE)
    with torch.no_grad():
        want = plain_forward(op, u)
        assert plans_of(op, u) is None  # off by default
        setattr(op.fastpath, kernel, True)
        got = fast_forward(op, u)
        plans = plans_of(op, u)
    assert len(plans) == order and relative(got, want) < 1e-5
    with torch.no_grad():
        assert plans_of(op, u) is plans  # cached
        next(op.filter_fn.parameters()).add_(0.01)  # a new filter: new plans
        assert plans_of(op, u) is not plans
        assert plans_of(op, torch.randn(1, unsupported, 8, device=DEVICE)) is None
        op.fastpath.toeplitz = op.fastpath.monarch = True  # both on: the direct kernel runs
        assert relative(fast_forward(op, u), plain_forward(op, u)) < 1e-5
        assert "toeplitz" in op.fastpath.plans[0]
    assert plans_of(op, u) is None  # autograd on: the FFT path, which has a backward
    op.fastpath.clear()
    assert op.fastpath.plans is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kernel", ["toeplitz", "monarch"])
def test_on_a_gpu_a_kernel_path_agrees_in_bfloat16_and_replays_as_a_graph(kernel):
    torch.manual_seed(0)
    op = HyenaOperator(d_model=64, l_max=4096, order=2).cuda().to(torch.bfloat16).eval()
    x = torch.randn(2, 3000, 64, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        want = op(x).float()  # the fast path with cuFFT
        setattr(op.fastpath, kernel, True)
        op.fastpath.cuda_graphs = True
        outs = [op(x).float() for _ in range(3)]  # eager, fused, recorded and replayed
    assert op.fastpath.graph[1] is not None
    for got in outs:
        assert float((got - want).norm() / want.norm()) < 2e-2
