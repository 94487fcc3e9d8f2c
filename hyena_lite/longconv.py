"""The Hyena recurrence for training, with a backward written by hand.

Autograd through `HyenaOperator.recurrence` records every cast, pad, slice, complex product and
FFT as its own node: about 200 kernels per operator for forward plus backward, most of them
element-wise passes over float32 signals. Here the whole order-N recurrence is one autograd node.
Its backward uses the adjoints of the causal FFT convolution directly: the input's gradient is the
output gradient correlated with the filter, the filter's gradient the output gradient correlated
with the input, both one inverse FFT of a conjugate product; the input spectra are kept from the
forward, so no FFT is repeated. The short filter runs as K shifted products instead of a depthwise
Conv1d, whose CUDA kernels are slow at long L. Taught in chapter 9.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from hyena_lite.fftconv import fft_size
from hyena_lite.recompiles import allow_recompiles

if TYPE_CHECKING:
    from hyena_lite.operator import HyenaOperator


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
    filters k [N, D, L] and skips [N, D]; the output z^N is [B, D, L] in float32 (float64 for
    float64 inputs). Saves, per step, its input, the input's spectrum and the convolution's output
    (what the gate's gradient needs).
    """

    @staticmethod
    def forward(ctx, mixed: Tensor, k: Tensor, skips: Tensor) -> Tensor:
        order, width, length = k.shape
        n = fft_size(length)
        wide = torch.promote_types(mixed.dtype, torch.float32)
        spectra_k = torch.fft.rfft(k.to(wide), n=n)  # [N, D, n // 2 + 1]
        skips = skips.to(wide)
        padded = _zero_padded(mixed, width, length, n, wide)
        padded[..., :length] = mixed[:, order * width :]
        saved = []
        for step in range(order):
            z = padded[..., :length]
            spectrum = torch.fft.rfft(padded)
            y = torch.fft.irfft(spectrum * spectra_k[step], n=n)[..., :length]
            conv = torch.addcmul(y, skips[step, :, None], z)
            saved += [z, spectrum, conv]
            gate = mixed[:, step * width : (step + 1) * width]
            if step == order - 1:
                out = conv * gate
            else:
                padded = _zero_padded(mixed, width, length, n, wide)
                torch.mul(conv, gate, out=padded[..., :length])
        ctx.save_for_backward(mixed, spectra_k, skips, *saved)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        mixed, spectra_k, skips, *saved = ctx.saved_tensors
        order, width = spectra_k.shape[0], spectra_k.shape[1]
        length = grad.shape[-1]
        n = fft_size(length)
        g = grad.to(spectra_k.real.dtype)
        d_mixed = torch.empty_like(mixed, memory_format=torch.contiguous_format)
        d_k = torch.empty(order, width, length, dtype=g.dtype, device=g.device)
        d_skips = torch.empty_like(skips)
        for step in reversed(range(order)):
            z, spectrum, conv = saved[3 * step : 3 * step + 3]
            channels = slice(step * width, (step + 1) * width)
            torch.mul(g, conv, out=d_mixed[:, channels])
            padded = _zero_padded(mixed, width, length, n, g.dtype)
            d_conv = torch.mul(g, mixed[:, channels], out=padded[..., :length])
            d_spectrum = torch.fft.rfft(padded)
            product = d_spectrum * spectrum.conj()  # the filter's gradient, per sequence
            product = product[0] if product.shape[0] == 1 else product.sum(0)
            d_k[step] = torch.fft.irfft(product, n=n)[..., :length]
            d_skips[step] = (d_conv * z).sum((0, 2))
            y = torch.fft.irfft(d_spectrum * spectra_k[step].conj(), n=n)[..., :length]
            g = torch.addcmul(y, skips[step, :, None], d_conv)
        d_mixed[:, order * width :] = g
        return d_mixed, d_k, d_skips


def _zero_padded(like: Tensor, width: int, length: int, n: int, dtype: torch.dtype) -> Tensor:
    """A [B, width, n] buffer whose steps from `length` on are zero (the first `length` left
    unset): a signal written into its front is zero-padded for an FFT of size n without a copy."""
    buffer = torch.empty(like.shape[0], width, n, dtype=dtype, device=like.device)
    buffer[..., length:].zero_()
    return buffer


_COMPILED: list = []  # short_conv compiled by torch.compile, made on first use


def _short_conv(fused: bool):
    """`short_conv`, or on CUDA with `fused` its torch.compile'd form: one kernel forward and a few
    backward, for each input shape."""
    if not fused:
        return short_conv
    if not _COMPILED:
        allow_recompiles()
        _COMPILED.append(torch.compile(short_conv, dynamic=False, fullgraph=True))
    return _COMPILED[0]


def fused_training_forward(op: HyenaOperator, u: Tensor) -> Tensor:
    """`op`'s forward on u [B, L, d_model] through `short_conv` and `Recurrence`: the plain
    forward's function, with fewer kernels and a cheaper backward. On CUDA the short filter runs
    compiled when `op.fastpath.compile` is on."""
    length = u.shape[1]
    z = op.in_proj(u).transpose(1, 2)  # [B, (N + 1) D, L]
    conv = _short_conv(u.is_cuda and op.fastpath.compile)
    z = conv(z, op.short_filter.weight, op.short_filter.bias)
    k, skips = op.long_filters(length)
    y = Recurrence.apply(z, k, skips)
    return op.out_proj(y.to(u.dtype).transpose(1, 2))


def trains_fused(op: HyenaOperator) -> bool:
    """Whether `fused_training_forward` computes this operator's training forward: on unless turned
    off, and only without dropout in training (which `Recurrence` leaves out)."""
    return op.fastpath.fused_training and not (op.training and op.dropout.p > 0)
