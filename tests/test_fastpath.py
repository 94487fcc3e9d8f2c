"""The fast path: the same function as the plain forward, its caches and its settings; the
CUDA-only parts (fused kernels, CUDA graphs) run where a GPU is present."""

import shutil

import pytest
import torch

from hyena_lite import HyenaOperator, fastpath
from hyena_lite.fastpath import FastPath

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CPP = pytest.mark.skipif(
    not any(shutil.which(name) for name in ("g++", "clang++", "c++")),
    reason="torch.compile's CPU backend (inductor) needs a C++ compiler",
)


def _operator(order: int = 2, d_model: int = 8, l_max: int = 64, seed: int = 0) -> HyenaOperator:
    """An operator whose own forward is the plain path (the reference the fast path must equal)."""
    torch.manual_seed(seed)
    op = HyenaOperator(d_model, l_max, order=order, filter_order=16)
    op.fast = False
    return op


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("length", [1, 7, 64])
def test_fast_path_equals_plain_path(order: int, length: int) -> None:
    op = _operator(order)
    u = torch.randn(3, length, 8)
    assert torch.allclose(fastpath.fast_forward(op, u), op(u), atol=1e-6, rtol=1e-5)


def test_fast_path_gradients_equal_plain_path() -> None:
    op = _operator(order=2)
    u = torch.randn(2, 33, 8, requires_grad=True)
    params = [u, *op.parameters()]
    got = torch.autograd.grad(fastpath.fast_forward(op, u).square().sum(), params)
    want = torch.autograd.grad(op(u).square().sum(), params)
    for g, w in zip(got, want, strict=False):
        assert torch.allclose(g, w, atol=1e-5, rtol=1e-4), (g - w).abs().max()


def test_fast_path_in_bfloat16_stays_close_to_plain_path() -> None:
    op = _operator().bfloat16()
    u = torch.randn(2, 40, 8, dtype=torch.bfloat16)
    got, want = fastpath.fast_forward(op, u), op(u)
    assert (
        got.dtype == torch.bfloat16
        and (got.float() - want.float()).norm() / want.float().norm() < 2e-2
    )


def test_fused_kernels_are_the_same_functions() -> None:
    """Off CUDA `_kernel` hands out the plain Python functions that torch.compile fuses on CUDA."""
    assert fastpath._kernel("gate", fused=False) is fastpath._gate
    op = _operator(order=3)
    u = torch.randn(2, 20, 8)
    assert torch.equal(fastpath._forward(op, u, fused=False), fastpath.fast_forward(op, u))


@CPP
def test_compiled_kernels_equal_the_plain_path() -> None:
    """`fused`: the element-wise work compiled (here by inductor's C++ backend); the same
    function."""
    op = _operator(order=2)
    u = torch.randn(2, 20, 8)
    with torch.no_grad():
        got, want = fastpath._forward(op, u, fused=True), op(u)
    assert torch.allclose(got, want, atol=1e-6, rtol=1e-5), (got - want).abs().max()


def test_inference_cache_is_reused_and_invalidated_by_updates() -> None:
    op = _operator()
    u = torch.randn(1, 20, 8)
    with torch.no_grad():
        first = fastpath.fast_forward(op, u)
        cached = op.fastpath.spectra
        fastpath.fast_forward(op, u)
        assert cached is not None and op.fastpath.spectra is cached  # reused
        op.filter_fn.head.weight.mul_(2.0)  # an in-place update, as an optimiser step makes
        after = fastpath.fast_forward(op, u)
        assert op.fastpath.spectra is not cached and torch.allclose(
            after, op(u), atol=1e-6, rtol=1e-5
        )
        assert not torch.allclose(after, first)
        fastpath.fast_forward(op, torch.randn(1, 21, 8))  # another length: recomputed
        assert op.fastpath.spectra[0][0] == 21
        fastpath.clear_caches(op)
        assert op.fastpath.spectra is None
    fastpath.fast_forward(
        op, u
    )  # with autograd on nothing is cached, so gradients reach the filter
    assert op.fastpath.spectra is None


def test_operator_takes_the_fast_path_only_where_it_pays(monkeypatch) -> None:
    op = _operator()
    op.fast = True
    u = torch.randn(1, 16, 8)
    with torch.no_grad():
        assert not fastpath.pays_off(op, u)  # CPU: the plain path
        op(u)
        assert op.fastpath.spectra is None
        import hyena_lite.operator as operator_module

        monkeypatch.setattr(operator_module, "pays_off", lambda *_: True)
        op(u)
        assert op.fastpath.spectra is not None  # dispatched to the fast path
    op.dropout.p = 0.5
    assert not fastpath.pays_off(op.train(), u)  # the fast path has no dropout


def test_settings_belong_to_each_operator(monkeypatch) -> None:
    """Each operator carries its own settings: changing one leaves another as it was."""
    monkeypatch.setenv("HYENA_LITE_CUDA_GRAPHS", "1")
    monkeypatch.setenv("HYENA_LITE_COMPILE", "0")
    a, b = _operator(), _operator()
    assert a.fastpath.cuda_graphs and not a.fastpath.compile  # defaults read from the environment
    a.fastpath.cuda_graphs = False
    assert b.fastpath.cuda_graphs and a.fastpath is not b.fastpath


def test_spectra_are_not_kept_when_caching_is_off() -> None:
    op, u = _operator(), torch.randn(2, 16, 8)
    op.fastpath = FastPath(cache_spectra=False)
    with torch.no_grad():
        assert torch.allclose(fastpath.fast_forward(op, u), op(u), atol=1e-6, rtol=1e-5)
    assert op.fastpath.spectra is None


def test_clear_caches_clears_every_operator_of_a_model() -> None:
    ops = torch.nn.Sequential(_operator(), _operator(seed=1))
    with torch.no_grad():
        for op in ops:
            fastpath.fast_forward(op, torch.randn(1, 8, 8))
    assert all(op.fastpath.spectra is not None for op in ops)
    fastpath.clear_caches(ops)
    assert all(op.fastpath.spectra is None and op.fastpath.graph is None for op in ops)


@CUDA
@pytest.mark.parametrize("graphs", [False, True])
def test_cuda_inference_equals_plain_path_fused_and_replayed(graphs: bool) -> None:
    """Eager, then fused (and with graphs recorded, then replayed): every call equals the plain
    forward."""
    op = _operator(d_model=16).cuda().eval()
    op.fastpath = FastPath(compile=True, cuda_graphs=graphs)
    u = torch.randn(2, 32, 16, device="cuda")
    with torch.no_grad():
        want = op(u)
        for _ in range(3):
            got = fastpath.fast_forward(op, u)
            assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert (op.fastpath.graph[1] is not None) == graphs


def test_half_ffts_stay_off_the_cpu() -> None:
    """`half_fft` asks for float16 cuFFT: on a CPU the float32 path runs as before."""
    op = _operator()
    op.fastpath = FastPath(half_fft=True)
    u = torch.randn(2, 33, 8)
    with torch.no_grad():
        assert torch.equal(fastpath.fast_forward(op, u), fastpath._forward(op, u))
        assert op.fastpath.spectra[1][0].dtype == torch.complex64


def test_half_fft_scaling_keeps_float16_in_range_and_equals_the_plain_forward(
    monkeypatch,
) -> None:
    """The float16 path's scaling (on a CPU, float16 values between float32 transforms): with
    filters whose taps sum to thousands, every float16 signal and convolution stays far below
    65,504 and the output equals the plain forward to float16's rounding."""
    op = _operator(d_model=16, l_max=4096)
    values, convolve = [], fastpath._convolve

    def recorded(v: torch.Tensor, spectrum: torch.Tensor, n: int, packed: bool) -> torch.Tensor:
        y = convolve(v, spectrum, n, packed)
        values.extend([float(v.float().abs().max()), float(y.float().abs().max())])
        return y

    monkeypatch.setattr(fastpath, "_convolve", recorded)
    with torch.no_grad():
        op.filter_fn.head.weight.mul_(200.0)  # filters with large taps
        u = torch.randn(1, 4096, 16)
        k, _ = op.long_filters(4096)
        spectra, skips, gain = fastpath.filter_spectra(op, 4096, half=True)
        got, want = fastpath._mix(op, u, spectra, skips, gain=gain), op(u)
    assert k.abs().sum(-1).max() > 1000  # each convolution far larger than its input
    assert spectra.dtype == torch.complex32 and len(values) == 4
    assert max(values) < 1000, values
    error = (got - want).norm() / want.norm()
    assert torch.isfinite(got).all() and error < 5e-3, error


@CUDA
@pytest.mark.parametrize("compile_kernels", [False, True])
@pytest.mark.parametrize("length", [100, 4096])
def test_half_fft_inference_is_close_to_the_plain_path(compile_kernels: bool, length: int) -> None:
    """Float16 FFTs (scaled by 1 / sqrt(n) both sides) give the float32 forward to within
    float16's rounding, eagerly, fused and replayed as a CUDA graph, and cache complex32
    spectra."""
    op = _operator(d_model=32, l_max=length).cuda().eval()
    op.fastpath = FastPath(compile=compile_kernels, cuda_graphs=True, half_fft=True)
    u = torch.randn(2, length, 32, device="cuda")
    with torch.no_grad():
        want = op(u)
        for _ in range(3):
            got = fastpath.fast_forward(op, u)
            error = (got - want).norm() / want.norm()
            assert torch.isfinite(got).all() and error < 5e-3, error
    assert op.fastpath.spectra[1][0].dtype == torch.complex32


@pytest.mark.parametrize("order", [1, 3])
def test_plain_forward_without_a_generator_equals_the_operator(order: int) -> None:
    op = _operator(order)
    u = torch.randn(2, 21, 8)
    assert torch.equal(fastpath.plain_forward(op, u), op(u))


def test_compiled_training_forward_and_gradients_equal_the_plain_ones(monkeypatch) -> None:
    """With `compile_training` the forward under autograd is torch.compile'd (here with the
    aot_eager backend, which traces as inductor does but runs eagerly: fast on a CPU)."""
    monkeypatch.setattr(fastpath, "TRAINING_BACKEND", "aot_eager")
    plain, compiled = _operator(), _operator()
    compiled.fast, compiled.fastpath.compile_training = True, True
    monkeypatch.setattr(fastpath, "_TRAINING", {})
    u = torch.randn(2, 33, 8, requires_grad=True)
    out = compiled(u)
    assert list(fastpath._TRAINING) == ["aot_eager"]  # the compiled function ran
    got = torch.autograd.grad(out.square().sum(), [u, *compiled.parameters()])
    want = torch.autograd.grad(plain(u).square().sum(), [u, *plain.parameters()])
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-5, rtol=1e-4), (g - w).abs().max()
    with torch.no_grad():  # inference keeps its own path
        assert torch.allclose(compiled(u), plain(u), atol=1e-6, rtol=1e-5)


def test_compiled_inference_forward_equals_the_plain_one(monkeypatch) -> None:
    """`compiled_forward` (here with the aot_eager backend: traced as by inductor, run eagerly)
    equals the plain forward, called itself and inside a function compiled whole, where the
    fast path traces it with the spectra cached outside the traced code."""
    monkeypatch.setattr(fastpath, "INFERENCE_BACKEND", "aot_eager")
    monkeypatch.setattr(fastpath, "_WHOLE", {})
    op = _operator(order=3)
    u = torch.randn(2, 21, 8)
    whole = torch.compile(lambda x: fastpath.fast_forward(op, x), backend="aot_eager")
    with torch.no_grad():
        want = op(u)
        got = fastpath.compiled_forward(op, u)
        assert list(fastpath._WHOLE) == ["aot_eager"]  # the compiled function ran
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-5)
        assert torch.allclose(whole(u), want, atol=1e-6, rtol=1e-5)
    assert op.fastpath.spectra is not None  # cached by the eager part, outside the traced code
