"""The Hyena recurrence for training, with a backward written by hand.

Autograd through `HyenaOperator.recurrence` records every cast, pad, slice, complex product and
FFT as its own node: about 200 kernels per operator for forward plus backward, most of them
element-wise passes over float32 signals. Here the whole order-N recurrence is one autograd node.
Its backward uses the adjoints of the causal FFT convolution directly: the input's gradient is the
output gradient correlated with the filter, the filter's gradient the output gradient correlated
with the input, both one inverse FFT of a conjugate product; the input spectra are kept from the
forward, so no FFT is repeated. The inverse FFTs are left unnormalised (`norm="forward"`), their
1/n applied in the element-wise work that reads them: on CUDA, torch.fft would otherwise rescale
each inverse's output in a pass of its own. The short filter runs as K shifted products instead of
a depthwise Conv1d, whose CUDA kernels are slow at long L. On CUDA the element-wise work between
the FFTs (casts, pads, skips, gates, conjugate products, the batch sum) runs as a few kernels
compiled by torch.compile, written on real views so that inductor fuses the complex products too,
and so do the short filter and the long filters' MLP; elsewhere the same functions run eagerly.
Taught in chapter 9.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from hyena_lite.fftconv import fft_size
from hyena_lite.recompiles import allow_recompiles

if TYPE_CHECKING:
    from hyena_lite.operator import HyenaOperator


UNSCALED = "forward"  # torch.fft's name for an inverse with no 1/n: the forward carries it


def short_conv(z: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Depthwise causal convolution of z [B, C, L] with taps weight [C, 1, K] (+ bias [C]), as K
    shifted products: the same function as `nn.Conv1d(C, C, K, groups=C, padding=K - 1)` cut to
    the first L steps. Computed in float32 (float64 for float64), returned in z's dtype."""
    taps, length = weight.shape[-1], z.shape[-1]
    wide = torch.promote_types(z.dtype, torch.float32)
    padded = F.pad(z, (taps - 1, 0))
    out = padded[..., taps - 1 :] * weight[:, 0, taps - 1, None].to(wide)
    for j in range(taps - 1):  # tap j sees step t - (taps - 1 - j)
        out = out + padded[..., j : j + length] * weight[:, 0, j, None].to(wide)
    if bias is not None:
        out = out + bias[:, None].to(wide)
    return out.to(z.dtype)


class Recurrence(torch.autograd.Function):
    """z^0 = v, z^n = x^n * (h^n * z^(n-1) + D^n z^(n-1)) for n = 1..N, as one autograd node.

    Inputs: the short filter's output [B, (N + 1) D, L] (gates x^1..x^N, then the value v, the
    in-projection's layout: its gradient comes back as one tensor, with no slices to scatter),
    filters k [N, D, L] (or already zero-padded to the FFT's n = fft_size(L) taps, which saves a
    pad here and a slice of their gradient), skips [N, D], and `fused`: run the element-wise work
    between the FFTs as torch.compile'd kernels (see `_segment`). The output z^N is [B, L, D]
    (ready for the out-projection) in the input's dtype, computed in float32 (float64 for float64
    inputs). With `packed` (float32 only), the inverse FFTs of the output, of the input's gradient
    and of the filters' gradient come from `hyena_lite.packed_inverse` (see
    `FastPath.packed_inverse`). Saves, per step, its zero-padded input, the input's spectrum and
    the inverse FFT's output, n times the convolution (from which the backward recomputes the
    convolution that the gate's gradient needs).
    """

    @staticmethod
    def forward(
        ctx, mixed: Tensor, k: Tensor, skips: Tensor, fused: bool = False, packed: bool = False
    ) -> Tensor:
        (order, width, taps), length = k.shape, mixed.shape[-1]
        n = fft_size(length)
        if taps not in (length, n):
            raise ValueError(
                f"k has {taps} taps; give it the sequence length {length}, or {n} (the FFT size, "
                f"zero-padded)"
            )
        wide = torch.promote_types(mixed.dtype, torch.float32)
        packed = packed and wide == torch.float32
        if taps != n or k.dtype != wide:
            k = _segment("pad", fused)(k, n, wide)
        spectra_k = torch.fft.rfft(k)  # [N, D, n // 2 + 1]
        skips = skips.to(wide)
        z = _segment("pad", fused)(mixed[:, order * width :], n, wide)
        saved = []
        for step in range(order):
            spectrum = torch.fft.rfft(z)
            y = _product_inverse(spectrum, spectra_k[step], n, packed)
            saved += [z, spectrum, y]
            gate = mixed[:, step * width : (step + 1) * width]
            last = step == order - 1
            z = _segment("output" if last else "next_input", fused)(y, z, skips[step], gate)
        ctx.fused, ctx.packed, ctx.taps = fused, packed, taps
        ctx.save_for_backward(mixed, spectra_k, skips, *saved)
        return z

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        mixed, spectra_k, skips, *saved = ctx.saved_tensors
        fused, (order, width), length = ctx.fused, spectra_k.shape[:2], mixed.shape[-1]
        n = fft_size(length)
        d_mixed = torch.empty_like(mixed, memory_format=torch.contiguous_format)
        if ctx.packed:  # the filters' gradients as packed spectra (see packed_correlation)
            from hyena_lite import packed_inverse  # imports triton: only when asked for

            d_filters = spectra_k.new_empty(order, width, n // 2)
        else:  # as spectra
            d_filters = torch.empty_like(spectra_k)
        d_skips = torch.empty_like(skips)
        above: tuple[Tensor, ...] = (grad.transpose(1, 2),)  # what this step's output gradient is
        for step in reversed(range(order)):
            z, spectrum, y = saved[3 * step : 3 * step + 3]
            channels = slice(step * width, (step + 1) * width)
            args = (y, z, skips[step], mixed[:, channels], d_mixed[:, channels], d_skips[step])
            d_conv = _segment("step_grads" if len(above) == 1 else "inner_step_grads", fused)(
                *above, *args
            )
            d_spectrum = torch.fft.rfft(d_conv)
            if ctx.packed:
                packed_inverse.packed_correlation(d_spectrum, spectrum, 1 / n, d_filters[step])
                d_input = _product_inverse(d_spectrum, spectra_k[step], n, True, conjugate=True)
            else:
                d_input = _spectral_grads(
                    d_spectrum, spectrum, spectra_k[step], d_filters[step], fused
                )
                d_input = torch.fft.irfft(d_input, n=n, norm=UNSCALED)
            above = (d_input, skips[step], d_conv)
        _segment("value_grad", fused)(*above, d_mixed[:, order * width :])
        if ctx.packed:
            d_k = packed_inverse.packed_inverse(d_filters)[..., : ctx.taps]
        else:
            d_k = torch.fft.irfft(d_filters, n=n, norm=UNSCALED)[..., : ctx.taps]
        return d_mixed, d_k, d_skips, None, None


def _fft_length(spectrum: Tensor) -> int:
    """The even FFT size n of a real signal's spectrum [..., n // 2 + 1], or of its real view
    [..., n // 2 + 1, 2]."""
    bins = spectrum.shape[-1] if spectrum.is_complex() else spectrum.shape[-2]
    return 2 * (bins - 1)


def _pad(x: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    """x [..., L] in `dtype`, zero-padded to n steps: an FFT input."""
    return F.pad(x.to(dtype), (0, n - x.shape[-1]))


def _convolution(y: Tensor, z: Tensor, skip: Tensor, length: int) -> Tensor:
    """h * z + D z on the first `length` steps, from the unnormalised inverse FFT's output y (n
    times h * z, n = y's length) and the padded z."""
    return torch.addcmul(y[..., :length] / y.shape[-1], skip[:, None], z[..., :length])


def _next_input(y: Tensor, z: Tensor, skip: Tensor, gate: Tensor) -> Tensor:
    """The next step's input x * (h * z + D z), zero-padded to y's n steps, in y's dtype."""
    length, n = gate.shape[-1], y.shape[-1]
    return F.pad(_convolution(y, z, skip, length) * gate.to(y.dtype), (0, n - length))


def _output(y: Tensor, z: Tensor, skip: Tensor, gate: Tensor) -> Tensor:
    """The last step's x * (h * z + D z) in the gate's dtype and [B, L, D] layout."""
    out = _convolution(y, z, skip, gate.shape[-1]) * gate.to(y.dtype)
    return out.to(gate.dtype).transpose(1, 2).contiguous()


def _step_grads(
    grad: Tensor, y: Tensor, z: Tensor, skip: Tensor, gate: Tensor, d_gate: Tensor, d_skip: Tensor
) -> Tensor:
    """From the gradient g [B, D, L] of a step's output: writes the gate's gradient g (h * z + D z)
    into d_gate and the skip's, sum(g x z), into d_skip; returns the convolution's gradient g x,
    zero-padded to n steps for its FFT."""
    length, n = gate.shape[-1], y.shape[-1]
    g = grad.to(y.dtype)
    d_gate.copy_(g * _convolution(y, z, skip, length))
    d_conv = g * gate.to(y.dtype)
    d_skip.copy_((d_conv * z[..., :length]).sum((0, 2)))
    return F.pad(d_conv, (0, n - length))


def _input_grad(y: Tensor, skip: Tensor, d_conv: Tensor, length: int) -> Tensor:
    """A step's input gradient: the correlation (y, the unnormalised inverse FFT of its spectrum,
    over n) plus the skip's D d_conv, on the first `length` steps."""
    return _convolution(y, d_conv, skip, length)


def _inner_step_grads(
    y_above: Tensor,
    skip_above: Tensor,
    d_conv_above: Tensor,
    y: Tensor,
    z: Tensor,
    skip: Tensor,
    gate: Tensor,
    d_gate: Tensor,
    d_skip: Tensor,
) -> Tensor:
    """`_step_grads` for a step whose output is the next step's input: its gradient is that step's
    input gradient, computed here rather than stored."""
    grad = _input_grad(y_above, skip_above, d_conv_above, gate.shape[-1])
    return _step_grads(grad, y, z, skip, gate, d_gate, d_skip)


def _value_grad(y: Tensor, skip: Tensor, d_conv: Tensor, d_value: Tensor) -> None:
    """Writes the first step's input gradient into d_value (the value's slice of d_mixed)."""
    d_value.copy_(_input_grad(y, skip, d_conv, d_value.shape[-1]))


def _conj_product(a: Tensor, b: Tensor) -> Tensor:
    """a * conj(b) for complex numbers stored as real pairs [..., 2]: real arithmetic that a
    compiler fuses, with no conjugate materialised."""
    re = a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1]
    im = a[..., 1] * b[..., 0] - a[..., 0] * b[..., 1]
    return torch.stack((re, im), dim=-1)


def _real_filter_grad(d_spectrum: Tensor, spectrum: Tensor, d_filter: Tensor) -> None:
    """The filter's gradient spectrum (see `_spectral_grads`) on real views [..., 2]."""
    d_filter.copy_(_conj_product(d_spectrum, spectrum).sum(0) / _fft_length(spectrum))


def _real_spectral_grads(
    d_spectrum: Tensor, spectrum: Tensor, spectrum_k: Tensor, d_filter: Tensor
) -> Tensor:
    """`_spectral_grads` on real views [..., 2] (what torch.compile fuses: inductor does not fuse
    complex arithmetic)."""
    _real_filter_grad(d_spectrum, spectrum, d_filter)
    return _conj_product(d_spectrum, spectrum_k)


def _product_inverse(
    spectrum: Tensor, spectrum_k: Tensor, n: int, packed: bool, conjugate: bool = False
) -> Tensor:
    """The unnormalised inverse FFT of spectrum * spectrum_k (with `conjugate`, times its
    conjugate): through `hyena_lite.packed_inverse` with `packed`, else by irfft."""
    if packed:
        from hyena_lite import packed_inverse  # imports triton: only when asked for

        product = packed_inverse.packed_product(spectrum, spectrum_k, conjugate)
        return packed_inverse.packed_inverse(product)
    product = spectrum * (spectrum_k.conj() if conjugate else spectrum_k)
    return torch.fft.irfft(product, n=n, norm=UNSCALED)


def _spectral_grads(
    d_spectrum: Tensor, spectrum: Tensor, spectrum_k: Tensor, d_filter: Tensor, fused: bool
) -> Tensor:
    """Writes the filter's gradient spectrum, sum over the batch of d_spectrum * conj(spectrum),
    over n (its unnormalised inverse FFT is then the gradient), into d_filter; returns the
    input's, d_spectrum * conj(spectrum_k). With `fused`, one compiled kernel on real views."""
    if not fused:
        torch.sum(d_spectrum * spectrum.conj() / _fft_length(spectrum), 0, out=d_filter)
        return d_spectrum * spectrum_k.conj()
    real = torch.view_as_real
    out = _segment("spectral_grads", True)(
        real(d_spectrum), real(spectrum), real(spectrum_k), real(d_filter)
    )
    return torch.view_as_complex(out)


_SEGMENTS: dict[str, Callable] = {
    "pad": _pad,
    "next_input": _next_input,
    "output": _output,
    "step_grads": _step_grads,
    "inner_step_grads": _inner_step_grads,
    "value_grad": _value_grad,
    "spectral_grads": _real_spectral_grads,
}
_COMPILED: dict[str, Callable] = {}  # what the training path compiles, made on first use


def _compiled(name: str, fn: Callable) -> Callable:
    """`fn` compiled by torch.compile for static shapes (one version per input shape), made once
    per name."""
    if name not in _COMPILED:
        allow_recompiles()
        _COMPILED[name] = torch.compile(fn, dynamic=False, fullgraph=True)
    return _COMPILED[name]


def _segment(name: str, fused: bool) -> Callable:
    """The element-wise segment `name` between the recurrence's FFTs: plain Python, or with `fused`
    compiled (a kernel or a few each)."""
    return _compiled(name, _SEGMENTS[name]) if fused else _SEGMENTS[name]


def _short_conv(fused: bool) -> Callable:
    """`short_conv`, or with `fused` its torch.compile'd form: one kernel forward and a few
    backward, for each input shape."""
    return _compiled("short_conv", short_conv) if fused else short_conv


def _padded_filters(op: HyenaOperator, length: int) -> tuple[Tensor, Tensor]:
    """`op.long_filters(length)` (positional encoding, the filter MLP, the decay window) with the
    filters zero-padded to the FFT's size, as `Recurrence` takes them: compiled, the pad is part
    of the window's kernel, and its backward reads the filters' gradient with no copy."""
    k, skips = op.long_filters(length)
    return F.pad(k, (0, fft_size(length) - length)), skips


def _compiles(op: HyenaOperator, u: Tensor) -> bool:
    """Whether the training path compiles its kernels for this call: on CUDA with
    `op.fastpath.compile` (elsewhere the same functions run eagerly)."""
    return u.is_cuda and op.fastpath.compile


def fused_training_forward(op: HyenaOperator, u: Tensor) -> Tensor:
    """`op`'s forward on u [B, L, d_model] through `short_conv` and `Recurrence`: the plain
    forward's function, with fewer kernels and a cheaper backward. On CUDA with
    `op.fastpath.compile` the short filter runs compiled, and with `op.fastpath.training_kernels`
    too the long filters and the recurrence's element-wise work between its FFTs."""
    length, compiled = u.shape[1], _compiles(op, u)
    segments = compiled and op.fastpath.training_kernels
    z = op.in_proj(u).transpose(1, 2)  # [B, (N + 1) D, L]
    z = _short_conv(compiled)(z, op.short_filter.weight, op.short_filter.bias)
    if segments:
        k, skips = _compiled("filters", _padded_filters)(op, length)
    else:
        k, skips = op.long_filters(length)
    return op.out_proj(Recurrence.apply(z, k, skips, segments, uses_packed_inverse(op, u)))


def uses_packed_inverse(op: HyenaOperator, u: Tensor) -> bool:
    """Whether this call's float32 inverse FFTs go through `hyena_lite.packed_inverse`
    (`FastPath.packed_inverse`): by default on CUDA; when asked for, also in Triton's interpreter
    (TRITON_INTERPRET=1); never inside torch.compile, which traces the irfft path instead."""
    setting = op.fastpath.packed_inverse
    if setting is False or torch.compiler.is_compiling():
        return False
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    return u.is_cuda or (setting is True and interpreted)


def trains_fused(op: HyenaOperator) -> bool:
    """Whether `fused_training_forward` computes this operator's training forward: on unless turned
    off, and only without dropout in training (which `Recurrence` leaves out)."""
    return op.fastpath.fused_training and not (op.training and op.dropout.p > 0)
