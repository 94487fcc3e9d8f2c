"""The Hyena operator (Poli et al. 2023): implicit long filters, data-controlled gates, causal
order-N recurrence.

One class per concept, as in safari's standalone_hyena.py: `HyenaFilter` makes the long filters
h^n_t = window_n(t) * FFN(posenc(t)) and the skips D^n; `HyenaOperator` projects, gates and
convolves.
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyena_lite.fastpath import (
    FastPath,
    fast_forward,
    pays_off,
    plain_forward,
    training_forward,
)
from hyena_lite.fftconv import fftconv
from hyena_lite.longconv import fused_training_forward, trains_fused


class Sin(nn.Module):
    """The FFN's activation sin(w * x), one learnable frequency per feature."""

    def __init__(self, features: int, w: float = 1.0) -> None:
        super().__init__()
        self.freq = nn.Parameter(torch.full((features,), float(w)))

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.freq.float() * x)


class HyenaFilter(nn.Module):
    """Implicit long filters: h[c, t] = exp(-|rate_c| t / l_max) * FFN(posenc(t))[c], plus a skip
    `bias` (D) per channel.

    The positional encoding of step t is [t / (l_max - 1), cos(2 pi f_b t / l_max), sin(2 pi f_b t /
    l_max)] for `(emb_dim - 1) // 2` bands f_b spread over [1e-4, bands - 1]. The decay rates are
    spread across channels so that the window falls to `target` after `fast_decay_pct` (fastest
    channel) to `slow_decay_pct` (slowest) of l_max. Filters are computed in float32 whatever the
    module's dtype; the filter of length L is the first L taps of the filter of length l_max.
    Taught in chapter 4.
    """

    def __init__(
        self,
        channels: int,
        l_max: int,
        emb_dim: int = 3,
        filter_order: int = 64,
        num_inner_mlps: int = 2,
        w: float = 1.0,
        fast_decay_pct: float = 0.3,
        slow_decay_pct: float = 1.5,
        target: float = 1e-2,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(
                f"emb_dim must be odd and >= 3 (time plus cos/sin per band), got {emb_dim}"
            )
        if l_max < 1 or channels < 1:
            raise ValueError(
                f"channels and l_max must be at least 1, got channels={channels}, l_max={l_max}"
            )
        self.channels, self.l_max, self.bands = channels, l_max, (emb_dim - 1) // 2
        sizes = [emb_dim] + [filter_order] * (num_inner_mlps + 1)
        self.linears = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=False)
        )
        self.activations = nn.ModuleList(Sin(filter_order, w) for _ in self.linears)
        self.head = nn.Linear(filter_order, channels, bias=False)
        fastest, slowest = math.log(target) / fast_decay_pct, math.log(target) / slow_decay_pct
        self.decay_rates = nn.Parameter(torch.linspace(slowest, fastest, channels).abs())
        self.bias = nn.Parameter(torch.randn(channels)) if bias else None

    def positional_encoding(self, length: int) -> Tensor:
        """The FFN's input for steps 0..length-1: [length, emb_dim] in float32."""
        steps = torch.arange(length, dtype=torch.float32, device=self.decay_rates.device)
        bands = torch.linspace(1e-4, self.bands - 1, self.bands, device=steps.device)
        angle = 2 * math.pi * steps[:, None] * bands[None, :] / self.l_max
        t = steps[:, None] / max(self.l_max - 1, 1)
        return torch.cat([t, torch.cos(angle), torch.sin(angle)], dim=-1)

    def window(self, length: int) -> Tensor:
        """The exponential decay window of each channel: [channels, length] in float32."""
        t = torch.arange(length, dtype=torch.float32, device=self.decay_rates.device) / max(
            self.l_max - 1, 1
        )
        return torch.exp(-self.decay_rates.float().abs()[:, None] * t[None, :])

    def forward(self, length: int) -> Tensor:
        """The filters for sequences of `length` <= l_max: [channels, length] in float32."""
        if length > self.l_max:
            raise ValueError(
                f"sequence length {length} exceeds the filter length {self.l_max} of this "
                f"HyenaFilter; "
                f"build it with l_max >= {length}"
            )
        h = self.positional_encoding(length)
        for linear, activation in zip(self.linears, self.activations, strict=False):
            h = activation(F.linear(h, linear.weight.float(), linear.bias.float()))
        h = F.linear(h, self.head.weight.float())  # [length, channels]
        return h.transpose(0, 1) * self.window(length)


def decay_within(context: int, l_max: int) -> dict[str, float]:
    """HyenaFilter's decay windows (`fast_decay_pct`, `slow_decay_pct`, fractions of l_max) moved
    inside the first `context` positions, as its defaults place them inside l_max: filters that
    keep their length but decay within the context a student trains on (chapter 12)."""
    if not 0 < context <= l_max:
        raise ValueError(f"the decay context must be in (0, l_max={l_max}], got {context}")
    defaults = inspect.signature(HyenaFilter.__init__).parameters
    return {
        name: defaults[name].default * context / l_max
        for name in ("fast_decay_pct", "slow_decay_pct")
    }


class HyenaOperator(nn.Module):
    """Causal Hyena mixer of order N: [B, L, d_model] -> [B, L, d_model], any L <= l_max.

    `in_proj` maps u to (N + 1) * d_model channels laid out as [x^1, ..., x^N, v]; a depthwise
    causal `short_filter` (size `short_filter_order`) mixes neighbouring steps; then for n = 1..N v
    <- x^n * (h^n * v + D^n v), with h^n, D^n from `filter_fn` and * the causal FFT convolution,
    computed in float32; `out_proj` maps back to d_model. With N = 2 and a near-identity h^1 this is
    linear attention y = q * (h * (k * v)), which is why a teacher's attention maps onto it as x^1
    <- key, x^N <- query, v <- value. Extra keyword arguments (emb_dim, w, decay settings, bias) go
    to `HyenaFilter`.
    Taught in chapter 4.
    """

    def __init__(
        self,
        d_model: int,
        l_max: int,
        order: int = 2,
        filter_order: int = 64,
        short_filter_order: int = 3,
        dropout: float = 0.0,
        **filter_args,
    ) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if d_model < 1 or l_max < 1:
            raise ValueError(f"d_model={d_model} and l_max={l_max} must both be at least 1")
        self.d_model, self.l_max, self.order = d_model, l_max, order
        width = (order + 1) * d_model
        self.in_proj = nn.Linear(d_model, width)
        self.short_filter = nn.Conv1d(
            width, width, short_filter_order, groups=width, padding=short_filter_order - 1
        )
        self.filter_fn = HyenaFilter(
            order * d_model, l_max, filter_order=filter_order, **filter_args
        )
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(d_model, d_model)
        # Where it pays (CUDA inference), forward through hyena_lite.fastpath; False: always plain.
        self.fast = True
        self.fastpath = FastPath()  # the fast path's settings and caches for this operator

    def _check(self, u: Tensor) -> None:
        """Raise ValueError saying what was expected when u is not [batch, length <= l_max,
        d_model]."""
        if u.dim() != 3:
            raise ValueError(
                f"expected input of shape [batch, length, {self.d_model}], got rank {u.dim()} "
                f"{tuple(u.shape)}"
            )
        if u.shape[-1] != self.d_model:
            raise ValueError(
                f"expected input width d_model={self.d_model} in the last dimension, got "
                f"{u.shape[-1]} "
                f"(shape {tuple(u.shape)}; inputs are [batch, length, d_model])"
            )
        if u.shape[1] > self.l_max:
            raise ValueError(
                f"sequence length {u.shape[1]} exceeds the filter length {self.l_max} of this "
                f"operator; "
                f"build it (or convert the student) with l_max >= {u.shape[1]}"
            )
        if u.shape[1] < 1:
            raise ValueError(
                f"empty sequence (shape {tuple(u.shape)}); the length must be at least 1"
            )
        weight = self.in_proj.weight.dtype
        autocast = torch.is_autocast_enabled(u.device.type)
        if not u.is_floating_point() or (u.dtype != weight and not autocast):
            raise TypeError(
                f"input dtype {u.dtype} does not match the operator's {weight}: pass "
                f"u.to({weight}) or convert the operator with .to(dtype)"
            )

    def gates_and_value(self, u: Tensor) -> tuple[list[Tensor], Tensor]:
        """In-projection and short causal convolution of u [B, L, D]: gates x^1..x^N and value v,
        each [B, D, L]."""
        length = u.shape[1]
        z = self.in_proj(u).transpose(1, 2)  # [B, (N + 1) D, L]
        z = self.short_filter(z)[..., :length]  # left padding only survives: causal
        *gates, v = z.split(self.d_model, dim=1)
        return gates, v

    def long_filters(self, length: int) -> tuple[Tensor, Tensor]:
        """The long filters h^1..h^N, [order, D, length], and skips D^1..D^N, [order, D], both
        float32."""
        k = self.filter_fn(length).view(self.order, self.d_model, length)
        bias = self.filter_fn.bias
        if bias is None:
            bias = torch.zeros(self.order * self.d_model, device=k.device)
        bias = bias.to(
            torch.float32, copy=True
        )  # a copy: under no_grad it must not be the Parameter itself
        return k, bias.view(self.order, self.d_model)

    def recurrence(self, u: Tensor, dtype: torch.dtype | None = None) -> Iterator[Tensor]:
        """The steps z^0 = v, z^n = x^n * (h^n * z^(n-1) + D^n z^(n-1)) for n = 1..N (dropout on
        each), one at a time, each [B, D, L] in `dtype` (default: float32, or float64 for a float64
        module)."""
        gates, v = self.gates_and_value(u)
        k, bias = self.long_filters(u.shape[1])
        wide = dtype or torch.promote_types(u.dtype, torch.float32)
        z = v.to(wide)
        yield z
        for n, x in enumerate(gates):
            z = self.dropout(x.to(wide) * fftconv(z, k[n].to(wide), bias[n].to(wide)))
            yield z

    def forward(self, u: Tensor) -> Tensor:
        """Apply the operator to u [B, L, d_model]; the recurrence runs in float32, projections in
        u's dtype."""
        self._check(u)
        if torch.compiler.is_compiling() and torch.is_grad_enabled():
            return plain_forward(self, u)  # a model compiled for training traces the plain path
        if self.fast and pays_off(self, u):
            return fast_forward(self, u)
        if self.fast and self.fastpath.compile_training and torch.is_grad_enabled():
            return training_forward(self, u)
        if self.fast and torch.is_grad_enabled() and trains_fused(self):
            return fused_training_forward(self, u)
        # The last step; a deque of one, not a list: each step is freed once the next exists.
        y = deque(self.recurrence(u), maxlen=1).pop()
        return self.out_proj(y.to(u.dtype).transpose(1, 2))
