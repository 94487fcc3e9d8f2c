"""Chapter 4's solutions: Hyena of order 1 by hand and a causality test."""

from __future__ import annotations

import torch

from hyena_lite.fftconv import fftconv
from hyena_lite.operator import HyenaOperator


def hyena_order1(op: HyenaOperator, u: torch.Tensor) -> torch.Tensor:
    """y = out_proj(x * (h * v + D v)) from op's own layers and long filters."""
    length = u.shape[1]
    z = op.in_proj(u).transpose(1, 2)
    # nn.Conv1d pads both sides: keep the first L (causal) outputs
    z = op.short_filter(z)[..., :length]
    x, v = z.split(op.d_model, dim=1)
    k, skip = op.long_filters(length)
    y = x * fftconv(v, k[0], skip[0])
    return op.out_proj(y.transpose(1, 2))


def leak(mixer, u: torch.Tensor, t: int) -> float:
    """The largest change of the outputs before step t when the input at step t changes."""
    changed = u.clone()
    changed[:, t] += 1.0
    if t == 0:
        return 0.0
    return (mixer(changed)[:, :t] - mixer(u)[:, :t]).abs().max().item()


def extra_parameters() -> int:
    """0: the filters are made by a network from positions, so no parameter grows with l_max."""
    return 0


short_filter_why = """It is not right. The long convolution acts only on the value path (h * v);
the gates x^n are multiplied in position by position, so without the short filter a gate at step
t sees only token t. The short causal convolution lets every gate and the value mix the last few
tokens before the long filters and the products act, which gives the operator cheap local
features (bigram-like patterns) that the smooth long filters express poorly."""
