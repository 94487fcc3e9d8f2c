"""The Hyena operator's fast forward: the same function as `HyenaOperator`'s plain forward, with
less memory traffic.

What makes it fast: the filter spectra are computed once per call for the whole batch (and cached at
inference, keyed on the parameters' versions so that any update invalidates them); channels stay
first from the in-projection to the gates without copies; FFTs run in float32 on power-of-two sizes,
with the inverse FFT's 1 / n folded into the filter. At inference on a GPU, once an input shape
repeats, the element-wise work around the FFTs (bias, short filter, zero padding, skip, gate, casts)
runs as a few kernels fused by torch.compile for that shape, and (opt-in) the whole forward is
replayed as a CUDA graph so that launching kernels costs no CPU time. Elsewhere (CPU, training, a
shape seen once, as in decoding by recomputation) the same Python code runs unfused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hyena_lite.cudagraph import record
from hyena_lite.fftconv import fft_size, fftconv
from hyena_lite.longconv import short_conv, uses_packed_inverse
from hyena_lite.recompiles import allow_recompiles

if TYPE_CHECKING:
    from hyena_lite.operator import HyenaOperator


@dataclass
class FastPath:
    """One operator's fast-path settings (`op.fastpath`), and what it keeps between calls.

    `compile`: fuse the element-wise work with torch.compile on CUDA for repeated shapes, and in
    training the short filter (default on; HYENA_LITE_COMPILE=0 turns it off). `cuda_graphs`:
    replay the inference forward as a CUDA graph once a shape repeats (opt-in,
    HYENA_LITE_CUDA_GRAPHS=1: the operator then keeps a private memory pool per shape).
    `cache_spectra`: keep the filter spectra at inference.
    `compile_training`: with autograd on, run the plain forward compiled whole by torch.compile
    (filters, projections, gates and their backward fused around the FFTs; opt-in,
    HYENA_LITE_COMPILE_TRAINING=1, on any device: one compilation per input shape).
    `fused_training`: with autograd on, run `hyena_lite.longconv`'s one-node recurrence with its
    hand-written backward (default on; HYENA_LITE_FUSED_TRAINING=0 turns it off).
    `training_kernels`: in that path on CUDA with `compile` on, also run the long filters and the
    recurrence's element-wise work between its FFTs as torch.compile'd kernels (default on;
    HYENA_LITE_TRAINING_KERNELS=0 turns it off). Measured on an H200 (training_h200.json, bf16,
    batch 1, forward + backward): 6.2 ms at 16K (plain 8.7, attention 4.1), 20 ms at 64K (plain
    36, attention 57); from 1K to 8K every path waits for the host, as a SmolLM2-shaped KD step
    does (fused without these kernels: 258 against 249 ms plain).
    `monarch`: at inference, for lengths `monarch_conv.supports` (513 to 4096), run each long
    convolution with its gate as `hyena_lite.monarch_conv`'s matrix-product kernel instead of cuFFT
    (on CUDA, or in Triton's interpreter; opt-in, HYENA_LITE_MONARCH=1, until timed inside the
    operator: the convolution alone ran 1.5 to 2 times faster than cuFFT's on an H100).
    `half_fft`: at inference on CUDA, run the FFTs, the spectrum products and the padded signals
    between them in float16 instead of float32 (half the bytes of the passes that bound the block
    from 16K; opt-in, HYENA_LITE_HALF_FFT=1). Float16 overflows at 65,504, so the signal is scaled
    by 1 / sqrt(n) before each forward FFT and each filter by 1 / sqrt(n) and by its own gain (see
    `filter_spectra`): a spectrum stays below sqrt(n) times its signal's mean magnitude, a
    convolution below its input's largest value. A channel whose signal averages more than
    65,504 / sqrt(n) in magnitude (181 at L = 64K) still overflows. A model compiled whole
    (`compiled_forward`) keeps float32 FFTs. Measured on an H100 (batch 1, bf16, graphs), against
    the float32 path: 0.197 against 0.267 ms at 4K, 1.01 against 1.20 at 16K (attention 1.08),
    4.5 against 6.9 at 64K, error 0.004-0.005 against the plain forward
    (operator_half_fft_scaled_h100.json).
    `toeplitz`: at inference, for lengths `toeplitz_conv.supports` (up to 8K), run each long
    convolution with its gate as `hyena_lite.toeplitz_conv`'s direct block-Toeplitz matrix
    products (bf16 operands for 16-bit inputs, float32 sums), the gate's short filter inside the
    same kernel and every step's output in the input's dtype (on CUDA or in Triton's interpreter;
    opt-in, HYENA_LITE_TOEPLITZ=1, until timed on a GPU). Takes precedence over `monarch`. Its
    cached plans hold 8 shifted bf16 copies of each filter: 200 MB an operator at 8K (768
    channels, order 2), where the spectra take 100 MB.
    `packed_inverse`: with float32 FFTs (at inference, and in the training path), compute each
    inverse FFT from `hyena_lite.packed_inverse`'s one-pass packed product and a half-size
    complex FFT instead of the spectrum product, torch's input copy and a complex-to-real FFT.
    None (the default): on CUDA outside torch.compile; True: also in Triton's interpreter (the
    tests); False: never (HYENA_LITE_PACKED_INVERSE=1 or 0). Measured on an H100 (batch 1, bf16,
    graphs; training_packed_h100.json, operator_packed_h100.json): forward plus backward at 16K
    4.11 against 4.36 ms (attention 3.98), at 32K 8.78 against 9.21; the forward at 16K 1.02
    against 1.19 (attention 1.08), at 64K 5.70 against 6.82. The filters' gradient in training
    goes the same way (`packed_inverse.packed_correlation`): 526 to 412 µs of kernel time a step
    at 16K (profile_training_packed_grad_h100.json).
    """

    compile: bool = field(default_factory=lambda: os.environ.get("HYENA_LITE_COMPILE", "1") != "0")
    cuda_graphs: bool = field(
        default_factory=lambda: os.environ.get("HYENA_LITE_CUDA_GRAPHS", "0") == "1"
    )
    cache_spectra: bool = True
    compile_training: bool = field(
        default_factory=lambda: os.environ.get("HYENA_LITE_COMPILE_TRAINING", "0") == "1"
    )
    fused_training: bool = field(
        default_factory=lambda: os.environ.get("HYENA_LITE_FUSED_TRAINING", "1") != "0"
    )
    training_kernels: bool = field(
        default_factory=lambda: os.environ.get("HYENA_LITE_TRAINING_KERNELS", "1") != "0"
    )
    monarch: bool = field(default_factory=lambda: os.environ.get("HYENA_LITE_MONARCH", "0") == "1")
    toeplitz: bool = field(
        default_factory=lambda: os.environ.get("HYENA_LITE_TOEPLITZ", "0") == "1"
    )
    half_fft: bool = field(
        default_factory=lambda: os.environ.get("HYENA_LITE_HALF_FFT", "0") == "1"
    )
    packed_inverse: bool | None = field(
        default_factory=lambda: {"0": False, "1": True}.get(
            os.environ.get("HYENA_LITE_PACKED_INVERSE", "")
        )
    )
    spectra: tuple | None = field(default=None, repr=False)  # (key, filter_spectra's)
    plans: tuple | None = field(default=None, repr=False)  # (key, monarch_conv plans)
    graph: tuple | None = field(default=None, repr=False)  # (key, recorded graph or None)

    def clear(self) -> None:
        """Drop the cached spectra, plans and CUDA graph (they are rebuilt on use)."""
        self.spectra = self.plans = self.graph = None


def _causal_conv(z: Tensor, in_bias: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Depthwise causal convolution of (z + in_bias) [B, C, L], zero before step 0, with taps weight
    [C, 1, K] plus bias, in float32: `longconv.short_conv`'s shifted products, each reading the
    input directly, so a compiler fuses it all into one pass."""
    return short_conv(z.float() + in_bias.float()[:, None], weight, bias)


def _short_gates(z: Tensor, in_bias: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """The gates: the short filter over the gate channels of z [B, N * D, L], in z's dtype."""
    return _causal_conv(z, in_bias, weight, bias).to(z.dtype)


def _scaled(x: Tensor, scale: float, dtype: torch.dtype) -> Tensor:
    """x * scale in `dtype` (no pass for scale 1)."""
    return (x if scale == 1.0 else x * scale).to(dtype)


def _short_value(
    z: Tensor,
    in_bias: Tensor,
    weight: Tensor,
    bias: Tensor,
    n: int,
    scale: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The value: the short filter over the value channels of z [B, D, L], times `scale` in `dtype`
    (float32, or float16 for half FFTs), zero-padded to n steps."""
    v = _scaled(_causal_conv(z, in_bias, weight, bias), scale, dtype)
    return F.pad(v, (0, n - z.shape[-1]))


def _gated(y: Tensor, v: Tensor, x: Tensor, skip: Tensor, scale: float) -> Tensor:
    """x * (y + skip * v / scale), float32, on the first L steps of the padded y and v (v holds
    the signal times `scale`)."""
    length = x.shape[-1]
    y, v = y[..., :length].float(), v[..., :length].float()
    return x.float() * (y + skip[:, None] * _scaled(v, 1 / scale, v.dtype))


def _gate(y: Tensor, v: Tensor, x: Tensor, skip: Tensor, scale: float = 1.0) -> Tensor:
    """The gate's output times `scale`, in v's dtype, zero-padded again for the next FFT."""
    g = _scaled(_gated(y, v, x, skip, scale), scale, v.dtype)
    return F.pad(g, (0, y.shape[-1] - x.shape[-1]))


def _last_gate(
    y: Tensor, v: Tensor, x: Tensor, skip: Tensor, scale: float = 1.0, gain: Tensor | None = None
) -> Tensor:
    """The last gate (times each channel's `gain` where given), written in x's dtype and in
    [B, L, D] layout, ready for the out-projection."""
    g = _gated(y, v, x, skip, scale)
    g = g if gain is None else g * gain[:, None]
    return g.to(x.dtype).transpose(1, 2).contiguous()


_KERNELS: dict[str, Callable] = {
    "gates": _short_gates,
    "value": _short_value,
    "gate": _gate,
    "last_gate": _last_gate,
}
_FUSED: dict[str, Callable] = {}


def _kernel(name: str, fused: bool) -> Callable:
    """The element-wise function `name`: compiled by torch.compile for static shapes when `fused`,
    else plain Python."""
    if not fused:
        return _KERNELS[name]
    if name not in _FUSED:
        allow_recompiles()
        _FUSED[name] = torch.compile(_KERNELS[name], dynamic=False, fullgraph=True)
    return _FUSED[name]


def _filters_key(op: HyenaOperator, length: int) -> tuple:
    """What the long filters for `length` depend on: the length and every filter parameter's
    storage and version (an optimiser step or load_state_dict bumps it, .to() moves it)."""
    return (length, *((p.data_ptr(), p._version) for p in op.filter_fn.parameters()))


def uses_half_fft(op: HyenaOperator, u: Tensor) -> bool:
    """Whether this call runs its FFTs in float16 (`FastPath.half_fft`, at inference on CUDA)."""
    return op.fastpath.half_fft and u.is_cuda and not torch.is_grad_enabled()


def filter_spectra(
    op: HyenaOperator, length: int, half: bool = False
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The long filters' spectra for `length`, [order, D, n // 2 + 1], the skips [order, D], and
    the output's gain [D] (None without `half`).

    The spectra are complex64 scaled by 1 / n: the 1 / n of the inverse FFT rides on the filter (so
    irfft runs with norm="forward" and needs no extra pass over its output). With `half`, complex32
    scaled by 1 / sqrt(n) (the signal carries the other 1 / sqrt(n)), and each step's filter and
    skip divided by the filter's gain, the sum of its taps' magnitudes (at least 1): every step
    then computes its output divided by the product of the gains so far, which is never larger
    than its input times its gate, and the last gate multiplies the product back (see
    `FastPath.half_fft`). Computed once per call for the whole batch; with autograd off
    (inference) the result is cached on the operator and reused until the length, device or any
    filter parameter changes (an optimiser step or load_state_dict bumps a parameter's version,
    .to() moves its storage).
    """
    key = (*_filters_key(op, length), half)
    state, keep = op.fastpath, op.fastpath.cache_spectra and not torch.is_grad_enabled()
    if keep and state.spectra is not None and state.spectra[0] == key:
        return state.spectra[1]
    k, skip = op.long_filters(length)
    if half:
        gains = k.abs().sum(-1).clamp_min(1.0)
        normalised = torch.fft.rfft(k / gains[..., None], n=fft_size(length), norm="ortho")
        spectra = (normalised.to(torch.complex32), skip / gains, gains.prod(0))
    else:
        spectra = (torch.fft.rfft(k, n=fft_size(length), norm="forward"), skip, None)
    state.spectra = (key, spectra) if keep else None
    return spectra


def _cached_plans(
    op: HyenaOperator, u: Tensor, kernel: Any, tag: tuple, make: Callable[[Tensor, int], dict]
) -> list[dict] | None:
    """The long filters' plans for u's length, one per order, `make(k, length)` each, cached on
    the operator like the spectra (keyed on the filters' state and `tag`), or None where
    `kernel`'s module cannot run them: neither CUDA nor Triton's interpreter, or a length its
    `supports` refuses."""
    from hyena_lite import monarch_conv  # imports triton: only when asked for

    length = u.shape[1]
    if not ((u.is_cuda or monarch_conv.interpreted()) and kernel.supports(length)):
        return None
    key, state = (*_filters_key(op, length), *tag), op.fastpath
    if state.plans is None or state.plans[0] != key:
        k, _ = op.long_filters(length)
        state.plans = (key, [make(k[step], length) for step in range(op.order)])
    return state.plans[1]


def monarch_plans(op: HyenaOperator, u: Tensor) -> list[dict] | None:
    """The long filters' `monarch_conv` plans for u's length (see `_cached_plans`), or None where
    the matrix-product convolution is not to run: `monarch` off, autograd on, or where it cannot
    run."""
    if not op.fastpath.monarch or torch.is_grad_enabled():
        return None
    from hyena_lite import monarch_conv

    return _cached_plans(op, u, monarch_conv, (), monarch_conv.make_plan)


def toeplitz_plans(op: HyenaOperator, u: Tensor) -> list[dict] | None:
    """The long filters' `toeplitz_conv` plans for u's length and dtype (see `_cached_plans`), or
    None where the direct convolution is not to run: `toeplitz` off, autograd on, or where it
    cannot run."""
    if not op.fastpath.toeplitz or torch.is_grad_enabled():
        return None
    from hyena_lite import toeplitz_conv  # imports triton: only when asked for

    precision = "ieee" if u.dtype == torch.float32 else "bf16"

    def make(k: Tensor, length: int) -> dict:
        return toeplitz_conv.make_plan(k, length, precision)

    return _cached_plans(op, u, toeplitz_conv, ("toeplitz", precision), make)


def _forward(op: HyenaOperator, u: Tensor, fused: bool = False) -> Tensor:
    """The fast forward, op by op: in-projection, short filter, order-N FFT recurrence (or the
    matrix-product convolutions of `toeplitz_plans` or `monarch_plans`), out-projection."""
    spectra, skips, gain = filter_spectra(op, u.shape[1], uses_half_fft(op, u))
    packed = uses_packed_inverse(op, u)
    plans = toeplitz_plans(op, u) or monarch_plans(op, u)
    return _mix(op, u, spectra, skips, fused, plans, gain, packed)


def _mix(
    op: HyenaOperator,
    u: Tensor,
    spectra: Tensor,
    skips: Tensor,
    fused: bool = False,
    plans: list[dict] | None = None,
    gain: Tensor | None = None,
    packed: bool = False,
) -> Tensor:
    """`_forward` given the filter spectra and skips (what torch.compile traces whole: no caches,
    no data pointers), or with `plans` the matrix-product convolutions, each gate fused in; with
    the output's `gain`, float16 FFTs (see `filter_spectra`); with `packed`, float32 inverses
    through `hyena_lite.packed_inverse`."""
    batch, length, width, gated = u.shape[0], u.shape[1], op.d_model, op.order * op.d_model
    n = fft_size(length)
    weight = op.in_proj.weight
    z = torch.bmm(
        weight.expand(batch, -1, -1), u.transpose(1, 2)
    )  # [B, (N + 1) D, L], channels first, no copy of u
    in_bias, conv_bias = op.in_proj.bias, op.short_filter.bias
    if in_bias is None or conv_bias is None:
        zeros = torch.zeros(z.shape[1], device=u.device)
        in_bias, conv_bias = (
            (zeros if in_bias is None else in_bias),
            (zeros if conv_bias is None else conv_bias),
        )
    w = op.short_filter.weight
    value_args = (z[:, gated:], in_bias[gated:], w[gated:], conv_bias[gated:])
    if plans is not None and plans[0].get("kernel") == "toeplitz":  # u's dtype; gates inside
        from hyena_lite import toeplitz_conv

        v = _kernel("value", fused)(*value_args, length, 1.0, u.dtype)
        for step, plan in enumerate(plans):  # each gate's short filter inside its kernel
            rows = slice(step * width, (step + 1) * width)
            short = (w[rows], in_bias[rows], conv_bias[rows])
            v = toeplitz_conv.causal_conv(
                v, plan, skips[step], z[:, rows], v.dtype, gate_filter=short
            )
        return op.out_proj(v.transpose(1, 2))
    gates = _kernel("gates", fused)(z[:, :gated], in_bias[:gated], w[:gated], conv_bias[:gated])
    if plans is not None:  # unpadded float32 values; each step one kernel, its gate inside
        from hyena_lite import monarch_conv

        v = _kernel("value", fused)(*value_args, length)
        precision = "ieee" if u.dtype == torch.float32 else "tf32"
        for step, plan in enumerate(plans):
            x = gates[:, step * width : (step + 1) * width]
            v = monarch_conv.causal_conv(v, plan, skips[step], gate=x, precision=precision)
        return op.out_proj(v.to(u.dtype).transpose(1, 2))
    half = gain is not None  # see FastPath.half_fft
    scale, dtype = (n**-0.5, torch.float16) if half else (1.0, torch.float32)
    v = _kernel("value", fused)(*value_args, n, scale, dtype)
    for step in range(op.order):
        y = _convolve(v, spectra[step], n, packed)
        x = gates[:, step * width : (step + 1) * width]
        if step == op.order - 1:
            v = _kernel("last_gate", fused)(y, v, x, skips[step], scale, gain)
        else:
            v = _kernel("gate", fused)(y, v, x, skips[step], scale)
    return op.out_proj(v)


def _convolve(v: Tensor, spectrum: Tensor, n: int, packed: bool = False) -> Tensor:
    """The padded signal v convolved with a cached filter spectrum (irfft's 1 / n already in it),
    in v's precision; with `packed` (float32), the inverse from the packed product. A CPU has no
    float16 FFT: there float16 values are transformed in float32 and the result rounded back (how
    the tests check `half_fft`'s scaling without a GPU)."""
    if packed and v.dtype == torch.float32:
        from hyena_lite import packed_inverse  # imports triton: only when asked for

        product = packed_inverse.packed_product(torch.fft.rfft(v), spectrum)
        return packed_inverse.packed_inverse(product)
    if v.dtype == torch.float16 and not v.is_cuda:
        spectrum = torch.fft.rfft(v.float()) * spectrum.to(torch.complex64)
        return torch.fft.irfft(spectrum, n=n, norm="forward").half()
    return torch.fft.irfft(torch.fft.rfft(v) * spectrum, n=n, norm="forward")


def _capture(op: HyenaOperator, u: Tensor, fused: bool) -> tuple[Any, ...]:
    """Record `_forward` on a copy of u as a CUDA graph; return (graph, its input, its output, the
    spectra it reads)."""
    static_in = u.clone()
    spectra = filter_spectra(op, u.shape[1], uses_half_fft(op, u))  # cached outside the graph
    plans = toeplitz_plans(op, u) or monarch_plans(op, u)  # likewise
    graph, static_out = record(lambda: _forward(op, static_in, fused), u.device)
    return graph, static_in, static_out, (spectra, plans)


def _inference(op: HyenaOperator, u: Tensor) -> Tensor:
    """Inference on CUDA: eager and unfused the first time a shape, convolution setting (`monarch`,
    `half_fft`, `packed_inverse`) and parameter state is seen; when it comes again, fused kernels
    compiled for it, and with `op.fastpath.cuda_graphs` a CUDA graph recorded then and replayed
    after."""
    settings = op.fastpath
    key = (
        tuple(u.shape),
        u.dtype,
        u.device,
        settings.monarch,
        settings.toeplitz,
        settings.half_fft,
        settings.packed_inverse,
        *((p.data_ptr(), p._version) for p in op.parameters()),
    )
    if settings.graph is None or settings.graph[0] != key:
        settings.graph = (key, None)  # new shape, settings or weights: eagerly, faster next time
        return _forward(op, u)
    if not settings.cuda_graphs or torch.cuda.is_current_stream_capturing():
        return _forward(op, u, fused=settings.compile)
    if settings.graph[1] is None:
        settings.graph = (key, _capture(op, u, settings.compile))
    graph, static_in, static_out, _ = settings.graph[1]
    static_in.copy_(u)
    graph.replay()
    return static_out.clone()


def plain_forward(op: HyenaOperator, u: Tensor) -> Tensor:
    """The operator's plain forward (its recurrence, then the out-projection) written without a
    generator, so that torch.compile traces it whole."""
    gates, v = op.gates_and_value(u)
    k, skips = op.long_filters(u.shape[1])
    wide = torch.promote_types(u.dtype, torch.float32)
    z = v.to(wide)
    for n, x in enumerate(gates):
        z = op.dropout(x.to(wide) * fftconv(z, k[n].to(wide), skips[n].to(wide)))
    return op.out_proj(z.to(u.dtype).transpose(1, 2))


TRAINING_BACKEND = "inductor"  # torch.compile's backend for `compile_training` (tests use others)
_TRAINING: dict[str, Callable] = {}


def training_forward(op: HyenaOperator, u: Tensor) -> Tensor:
    """`plain_forward` compiled by torch.compile for static shapes (see
    `FastPath.compile_training`)."""
    if TRAINING_BACKEND not in _TRAINING:
        allow_recompiles()
        _TRAINING[TRAINING_BACKEND] = torch.compile(
            plain_forward, backend=TRAINING_BACKEND, dynamic=False
        )
    return _TRAINING[TRAINING_BACKEND](op, u)


INFERENCE_BACKEND = "inductor"  # torch.compile's backend for `compiled_forward` (tests use others)
_WHOLE: dict[str, Callable] = {}


@torch.compiler.disable
def _cached_spectra(op: HyenaOperator, length: int) -> tuple[Tensor, Tensor, None]:
    """`filter_spectra`, run eagerly even inside a compiled region (its cache keys on data
    pointers, which torch.compile cannot trace)."""
    return filter_spectra(op, length)


def compiled_forward(op: HyenaOperator, u: Tensor) -> Tensor:
    """The inference forward compiled whole by torch.compile for static shapes: inductor fuses the
    element-wise work (biases, short filter, gates, skips, casts) between the matrix products and
    the FFTs, which stay cuBLAS's and cuFFT's; the filter spectra are cached outside the compiled
    code, as in `_forward`. Measured on an H200 (bf16, batch 1, 1K-64K): 2 to 7% slower than the
    fast path's own fused kernels, so that path stays the default."""
    spectra, skips, _ = _cached_spectra(op, u.shape[1])
    if torch.compiler.is_compiling():  # inside a model compiled whole: traced there
        return _mix(op, u, spectra, skips)
    if INFERENCE_BACKEND not in _WHOLE:
        allow_recompiles()
        _WHOLE[INFERENCE_BACKEND] = torch.compile(_mix, backend=INFERENCE_BACKEND, dynamic=False)
    return _WHOLE[INFERENCE_BACKEND](op, u, spectra, skips)


def pays_off(op: HyenaOperator, u: Tensor) -> bool:
    """Whether the fast path is the faster one for this call: inference on CUDA. Measured on an
    H200: in training its unfused route was slower than the plain forward (13.5 against 8.9 ms
    forward + backward at L = 16K)."""
    return u.is_cuda and not torch.is_grad_enabled() and not (op.training and op.dropout.p > 0)


def clear_caches(module: torch.nn.Module) -> None:
    """Drop the cached filter spectra and CUDA graphs of every Hyena operator in `module` (they are
    rebuilt on use)."""
    for sub in module.modules():
        if isinstance(getattr(sub, "fastpath", None), FastPath):
            sub.fastpath.clear()


def fast_forward(op: HyenaOperator, u: Tensor) -> Tensor:
    """`op`'s forward on u [B, L, d_model] by the fast path (see the module's doc for what runs
    where)."""
    if torch.compiler.is_compiling():  # a model compiled whole traces the fast forward
        return compiled_forward(op, u)
    if u.is_cuda and not torch.is_grad_enabled():
        return _inference(op, u)
    return _forward(op, u)
