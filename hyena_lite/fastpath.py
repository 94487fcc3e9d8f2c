"""The Hyena operator's fast forward: the same function as `HyenaOperator`'s plain forward, with less memory traffic.

What makes it fast: the filter spectra are computed once per call for the whole batch (and cached at
inference, keyed on the parameters' versions so that any update invalidates them); channels stay first
from the in-projection to the gates without copies; the element-wise work around the FFTs (bias, short
filter, zero padding, skip, gate, casts) runs as a few fused kernels made by torch.compile on CUDA, and as
the same Python code, unfused, elsewhere; FFTs run in float32 on power-of-two sizes.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from hyena_lite.fftconv import fft_size

if TYPE_CHECKING:
    from hyena_lite.operator import HyenaOperator

# Fuse the element-wise work with torch.compile on CUDA; set False (or HYENA_LITE_COMPILE=0) to run it unfused.
COMPILE_ON_CUDA = os.environ.get("HYENA_LITE_COMPILE", "1") != "0"


def _causal_conv(z: Tensor, in_bias: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Depthwise causal convolution of (z + in_bias) [B, C, L] with taps weight [C, 1, K] plus bias, in float32."""
    taps, length = weight.shape[-1], z.shape[-1]
    zp = F.pad(z.float() + in_bias.float()[:, None], (taps - 1, 0))
    out = bias.float()[:, None] + weight[:, 0, 0].float()[:, None] * zp[..., :length]
    for j in range(1, taps):
        out = out + weight[:, 0, j].float()[:, None] * zp[..., j : j + length]
    return out


def _short_gates(z: Tensor, in_bias: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """The gates: the short filter over the gate channels of z [B, N * D, L], in z's dtype."""
    return _causal_conv(z, in_bias, weight, bias).to(z.dtype)


def _short_value(z: Tensor, in_bias: Tensor, weight: Tensor, bias: Tensor, n: int) -> Tensor:
    """The value: the short filter over the value channels of z [B, D, L], float32, zero-padded to n steps."""
    return F.pad(_causal_conv(z, in_bias, weight, bias), (0, n - z.shape[-1]))


def _gate(y: Tensor, v: Tensor, x: Tensor, skip: Tensor) -> Tensor:
    """x * (y + skip * v) on the first L steps of the padded float32 y and v; zero-padded again for the next FFT."""
    length, n = x.shape[-1], y.shape[-1]
    g = x.float() * (y[..., :length] + skip[:, None] * v[..., :length])
    return F.pad(g, (0, n - length))


def _last_gate(y: Tensor, v: Tensor, x: Tensor, skip: Tensor) -> Tensor:
    """The last gate, written in x's dtype and in [B, L, D] layout, ready for the out-projection."""
    length = x.shape[-1]
    g = x.float() * (y[..., :length] + skip[:, None] * v[..., :length])
    return g.to(x.dtype).transpose(1, 2).contiguous()


_KERNELS: dict[str, Callable] = {"gates": _short_gates, "value": _short_value, "gate": _gate, "last_gate": _last_gate}
_COMPILED: dict[str, Callable] = {}


def _kernel(name: str, device: torch.device) -> Callable:
    """The element-wise function `name`: compiled once (dynamic shapes) on CUDA, plain Python elsewhere."""
    if device.type != "cuda" or not COMPILE_ON_CUDA:
        return _KERNELS[name]
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(_KERNELS[name], dynamic=True, fullgraph=True)
    return _COMPILED[name]


def filter_spectra(op: "HyenaOperator", length: int) -> tuple[Tensor, Tensor]:
    """The long filters' spectra for `length`, [order, D, n // 2 + 1] complex64, scaled by 1 / n, and the skips [order, D].

    The 1 / n of the inverse FFT rides on the filter (so irfft runs with norm="forward" and needs no extra
    pass over its output). Computed once per call for the whole batch; with autograd off (inference) the
    result is cached on the operator and reused until the length, device or any filter parameter changes
    (an optimiser step or load_state_dict bumps a parameter's version, .to() moves its storage).
    """
    params = tuple(op.filter_fn.parameters())
    key = (length, *((p.data_ptr(), p._version) for p in params))
    cached = getattr(op, "_spectra_cache", None)
    if not torch.is_grad_enabled() and cached is not None and cached[0] == key:
        return cached[1]
    k, skip = op.long_filters(length)
    spectra = (torch.fft.rfft(k, n=fft_size(length), norm="forward"), skip)
    op._spectra_cache = (key, spectra) if not torch.is_grad_enabled() else None
    return spectra


def fast_forward(op: "HyenaOperator", u: Tensor) -> Tensor:
    """`op`'s forward on u [B, L, d_model]: in-projection, short filter, order-N FFT recurrence, out-projection."""
    length, width, gated = u.shape[1], op.d_model, op.order * op.d_model
    n = fft_size(length)
    z = F.linear(u, op.in_proj.weight).transpose(1, 2)  # [B, (N + 1) D, L], a view: the kernels read it transposed
    in_bias, conv_bias = op.in_proj.bias, op.short_filter.bias
    if in_bias is None or conv_bias is None:
        zeros = torch.zeros(z.shape[1], device=u.device)
        in_bias, conv_bias = (zeros if in_bias is None else in_bias), (zeros if conv_bias is None else conv_bias)
    w = op.short_filter.weight
    gates = _kernel("gates", u.device)(z[:, :gated], in_bias[:gated], w[:gated], conv_bias[:gated])
    v = _kernel("value", u.device)(z[:, gated:], in_bias[gated:], w[gated:], conv_bias[gated:], n)
    spectra, skips = filter_spectra(op, length)
    for step in range(op.order):
        y = torch.fft.irfft(torch.fft.rfft(v) * spectra[step], n=n, norm="forward")
        x = gates[:, step * width : (step + 1) * width]
        v = _kernel("last_gate" if step == op.order - 1 else "gate", u.device)(y, v, x, skips[step])
    return op.out_proj(v)
