"""Decoding a Hyena operator token by token: cached and recurrent (modal state-space).

Decoding a long-convolution model naively re-runs every convolution for each new token. Here each
Hyena operator keeps a state instead:

- cached: the past inputs of each long convolution; the next output is one dot product per channel,
  O(L) time and memory, and equals the full forward pass;
- recurrent: each long filter is fitted by a modal state-space model (`hyena_lite.modal`) of order
  r; the state is r complex numbers per channel, O(r) per token whatever the context, and the
  prompt is prefilled by FFT.

Taught in chapter 10; `hyena_lite.generation` decodes whole models with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from hyena_lite.fftconv import fftconv
from hyena_lite.modal import ModalFilter, fit_modal, relative_error
from hyena_lite.operator import HyenaOperator
from hyena_lite.students import family_of


class OperatorDecoder:
    """Decode one HyenaOperator step by step: the first call (prefill) takes the prompt, later calls
    new tokens.

    Keeps the last `short_filter_order` projected inputs for the short filter; what each long
    convolution keeps is the subclass's business (`_prefill_conv`, `_step_conv`). Call `reset()` to
    start a new sequence.
    """

    def __init__(self, op: HyenaOperator) -> None:
        self.op = op
        self.length = 0  # positions seen so far
        self.window: Tensor | None = (
            None  # [B, (N + 1) D, K] the last K in-projected inputs, oldest first
        )
        _, self.skips = op.long_filters(1)

    def reset(self) -> None:
        """Forget the sequence; the next call is a prefill."""
        self.length, self.window = 0, None

    def state_bytes(self) -> int:
        """Bytes of the decoding state now held (short filter window and long convolution state)."""
        return 0 if self.window is None else self.window.numel() * self.window.element_size()

    state_names: tuple[str, ...] = ("window",)  # the state tensors that a step updates in place

    def _tensors(self) -> list[Tensor]:
        """The state tensors that a step updates in place."""
        return [getattr(self, name) for name in self.state_names]

    def snapshot(self) -> list[Tensor]:
        """Copies of the state, to undo warm-up steps (see `restore`)."""
        return [t.clone() for t in self._tensors()]

    def restore(self, saved: list[Tensor]) -> None:
        """Put back a snapshot, in place (the tensors keep their addresses, as a captured CUDA graph
        needs)."""
        for t, old in zip(self._tensors(), saved, strict=False):
            t.copy_(old)

    def __call__(self, u: Tensor) -> Tensor:
        """The operator's output [B, T, D] for the next T positions of u [B, T, D]."""
        return self.prefill(u) if self.length == 0 else self.extend(u)

    def prefill(self, u: Tensor, mask: Tensor | None = None) -> Tensor:
        """Start a new sequence with the prompt u [B, T, D]; its outputs [B, T, D]. mask [B, T]
        (0 at left pads) keeps the pads out of every later output and of the state."""
        self.reset()
        with torch.no_grad():
            return self._prefill(u, mask)

    def extend(self, u: Tensor) -> Tensor:
        """The outputs [B, T, D] of the next T positions u [B, T, D], one recurrent step each."""
        with torch.no_grad():
            return torch.cat([self._step(u[:, i]) for i in range(u.shape[1])], dim=1)

    def resume(self, state: list[Tensor]) -> None:
        """Continue from state tensors kept elsewhere (a Hugging Face cache), in the order of
        `snapshot()`: `extend` then updates them in place."""
        for name, tensor in zip(self.state_names, state, strict=True):
            setattr(self, name, tensor)

    def _prefill(self, u: Tensor, mask: Tensor | None = None) -> Tensor:
        op, length = self.op, u.shape[1]
        wide = torch.promote_types(u.dtype, torch.float32)
        keep = 1 if mask is None else mask[:, None, :].to(device=u.device, dtype=wide)
        p = op.in_proj(u).transpose(1, 2).to(wide) * keep  # [B, W, T]: pads project to zero
        taps = op.short_filter.weight.shape[-1]
        self.window = F.pad(p, (taps - 1, 0))[..., -taps:].contiguous()
        z = (
            F.conv1d(
                p,
                op.short_filter.weight.to(wide),
                op.short_filter.bias.to(wide),
                padding=taps - 1,
                groups=p.shape[1],
            )[..., :length]
            .to(u.dtype)
            .to(wide)
        )
        *gates, y = z.split(op.d_model, dim=1)
        y = y * keep  # a zero value at the pads: every long convolution then sees zeros there
        for n, x in enumerate(gates):
            y = x * self._prefill_conv(n, y)
        self.length = length
        return op.out_proj(y.to(u.dtype).transpose(1, 2))

    def _step(self, u: Tensor) -> Tensor:
        """One position: u [B, D] -> [B, 1, D]."""
        op = self.op
        wide = self.window.dtype
        p = op.in_proj(u).to(wide)
        self.window.copy_(
            torch.cat([self.window[..., 1:], p[..., None]], dim=-1)
        )  # in place: CUDA-graph safe
        z = (self.window * op.short_filter.weight[:, 0].to(wide)).sum(-1) + op.short_filter.bias.to(
            wide
        )
        *gates, y = z.to(u.dtype).to(wide).split(op.d_model, dim=1)
        for n, x in enumerate(gates):
            y = x * self._step_conv(n, y)
        self.length += 1
        return op.out_proj(y.to(u.dtype))[:, None]

    def _prefill_conv(self, n: int, y: Tensor) -> Tensor:
        """Stage n's long convolution (skip included) over the prompt, y [B, D, T] -> [B, D, T];
        keep its state."""
        raise NotImplementedError

    def _step_conv(self, n: int, y: Tensor) -> Tensor:
        """Stage n's long convolution at the next position, y [B, D] -> [B, D]; update its state."""
        raise NotImplementedError


class CachedDecoder(OperatorDecoder):
    """Exact decoding: keep each long convolution's input history; the next output is a dot product
    with the filter.

    O(L) time and memory per channel per token. The history grows (doubling) up to the filter length
    l_max.
    """

    def __init__(self, op: HyenaOperator, capacity: int | None = None) -> None:
        super().__init__(op)
        k, _ = op.long_filters(op.l_max)
        self.flipped = k.flip(
            -1
        ).contiguous()  # [N, D, l_max]: flipped[n, d, l_max - 1 - s] = h^n_s
        self.capacity = capacity or 0
        self.history: Tensor | None = None  # [N, D, B, capacity] inputs of each long convolution

    def reset(self) -> None:
        super().reset()
        self.history = None

    def state_bytes(self) -> int:
        held = 0 if self.history is None else self.history.numel() * self.history.element_size()
        return super().state_bytes() + held

    def _reserve(self, needed: int, batch: int, like: Tensor) -> None:
        l_max = self.op.l_max
        if needed > l_max:
            raise ValueError(
                f"position {needed} exceeds the filter length {l_max} of this Hyena operator: "
                f"cached "
                f"decoding reaches l_max tokens; convert the student with a larger l_max, or "
                f"decode "
                f"with mode='recurrent'"
            )
        if self.history is not None and self.history.shape[-1] >= needed:
            return
        size = min(
            l_max,
            max(needed, self.capacity, 2 * (0 if self.history is None else self.history.shape[-1])),
        )
        grown = torch.zeros(
            self.op.order, self.op.d_model, batch, size, dtype=like.dtype, device=like.device
        )
        if self.history is not None:
            grown[..., : self.history.shape[-1]] = self.history
        self.history = grown

    def _prefill_conv(self, n: int, y: Tensor) -> Tensor:
        length = y.shape[-1]
        self._reserve(length, y.shape[0], y)
        self.history[n, :, :, :length] = y.transpose(0, 1)
        k = self.flipped[n, :, self.op.l_max - length :].flip(-1)
        return fftconv(y, k, self.skips[n])

    def _step_conv(self, n: int, y: Tensor) -> Tensor:
        t = self.length
        self._reserve(t + 1, y.shape[0], y)
        self.history[n, :, :, t] = y.transpose(0, 1)
        past = self.history[n, :, :, : t + 1]  # [D, B, t + 1]
        taps = self.flipped[n, :, self.op.l_max - 1 - t :, None].to(y.dtype)  # [D, t + 1, 1]
        return torch.bmm(past, taps)[..., 0].transpose(0, 1) + self.skips[n].to(y.dtype) * y


class RecurrentDecoder(OperatorDecoder):
    """Decoding with modal state-space models of the long filters: O(r) time and memory per channel
    per token.

    `fit` holds the order * d_model filters of the operator (stage-major, as `long_filters` lays
    them out). The prompt's outputs come from the fitted filters by FFT; its final state from a
    Vandermonde product.
    """

    def __init__(self, op: HyenaOperator, fit: ModalFilter, chunk: int = 2048) -> None:
        super().__init__(op)
        device = op.out_proj.weight.device
        fit = fit.to(device=device, dtype=torch.float32)
        N, D = op.order, op.d_model
        self.fit = fit
        self.poles = fit.poles.view(N, D, -1)
        self.residues = fit.residues.view(N, D, -1)
        self.fir = fit.fir.view(N, D, -1).flip(-1).contiguous()  # reversed: fir[..., -1] is h_0
        self.chunk = chunk
        self.state: Tensor | None = None  # [N, B, D, modes] complex
        self.recent: Tensor | None = (
            None  # [N, B, D, F] the last F inputs of each convolution, oldest first
        )

    def reset(self) -> None:
        super().reset()
        self.state = self.recent = None

    def state_bytes(self) -> int:
        held = sum(t.numel() * t.element_size() for t in (self.state, self.recent) if t is not None)
        return super().state_bytes() + held

    state_names = ("window", "state", "recent")

    def _prefill_conv(self, n: int, y: Tensor) -> Tensor:
        batch, D, length = y.shape
        head = self.fir.shape[-1]
        if n == 0:
            self.state = torch.zeros(
                self.op.order,
                batch,
                D,
                self.poles.shape[-1],
                dtype=self.poles.dtype,
                device=y.device,
            )
            self.recent = torch.zeros(self.op.order, batch, D, head, dtype=y.dtype, device=y.device)
        keep = min(head, length)
        self.recent[n, ..., head - keep :] = y[..., length - keep :]
        # state after the prompt: sum over j <= T - F of poles^(T - F - j) y_j
        log_pole = torch.complex(
            self.poles[n].abs().clamp_min(1e-30).log(), self.poles[n].angle()
        )  # [D, m]
        last = length - head  # the newest input that has left the FIR head
        for start in range(0, last + 1, self.chunk):
            stop = min(start + self.chunk, last + 1)
            powers = torch.exp(
                log_pole[..., None] * (last - torch.arange(start, stop, device=y.device))
            )
            self.state[n] += torch.einsum(
                "dmj,bdj->bdm", powers, y[..., start:stop].to(powers.dtype)
            )
        k = ModalFilter(
            self.fit.poles.view(self.op.order, D, -1)[n],
            self.fit.residues.view(self.op.order, D, -1)[n],
            self.fit.fir.view(self.op.order, D, -1)[n],
            self.fit.order,
        ).taps(length)
        return fftconv(y, k, self.skips[n])

    def _step_conv(self, n: int, y: Tensor) -> Tensor:
        recent = torch.cat([self.recent[n, ..., 1:], y[..., None]], dim=-1)
        self.recent[n] = recent
        out = (
            (recent * self.fir[n]).sum(-1)
            + self.skips[n] * y
            + (self.residues[n] * self.state[n]).sum(-1).real
        )
        self.state[n] = self.poles[n] * self.state[n] + recent[..., :1]
        return out


# ------------------------------------------------------------------------------------ fitting a
# student
def hyena_operators(model: nn.Module) -> dict[int, HyenaOperator]:
    """The Hyena operator of each Hyena layer of a student, by layer index (empty for a teacher)."""
    layers = getattr(model.config, "hyena_layers", None) or []
    family = family_of(model)
    return {i: getattr(family.layers(model)[i], family.attention).operator for i in layers}


@dataclass
class StudentFit:
    """Modal fits of every Hyena layer's long filters, and how well they fit."""

    fits: dict[int, ModalFilter]
    rows: list[dict[str, Any]]  # per layer: layer, order, modes, fir, mean/max relative error


def fit_operator(
    op: HyenaOperator,
    order: int = 16,
    fir: int = 2,
    size: int | None = None,
    refine_steps: int = 0,
    lr: float = 1e-3,
    length: int | None = None,
) -> tuple[ModalFilter, Tensor]:
    """The modal fit of one operator's order * d_model long filters over their first `length` taps
    (default l_max), and those filters [C, taps] in float64; the arguments are `fit_student`'s."""
    taps = min(length or op.l_max, op.l_max)
    with torch.no_grad():
        k, _ = op.long_filters(taps)
    h = k.reshape(-1, taps).detach().double()
    return fit_modal(h, order, fir=fir, size=size, refine_steps=refine_steps, lr=lr), h


def fit_student(
    model: nn.Module,
    order: int = 16,
    fir: int = 2,
    size: int | None = None,
    refine_steps: int = 0,
    lr: float = 1e-3,
    length: int | None = None,
    progress: bool = True,
) -> StudentFit:
    """Fit each Hyena layer's filters with modal models of real order `order`; report the error per
    layer.

    The fit covers the first `length` taps (default: all l_max), the longest context it is meant
    for; see `hyena_lite.modal.fit_modal` for fir, size, refine_steps and lr.
    Taught in chapter 10.
    """
    fits, rows = {}, []
    operators = hyena_operators(model)
    if not operators:
        raise ValueError(
            f"{type(model).__name__} has no Hyena layers to fit: recurrent decoding is for Hyena "
            f"students"
        )
    for layer, op in tqdm(operators.items(), desc="modal fit", disable=not progress, leave=False):
        fit, h = fit_operator(op, order, fir, size, refine_steps, lr, length)
        error = relative_error(h, fit)
        fits[layer] = fit
        rows.append(
            {
                "layer": layer,
                "order": order,
                "modes": int(fit.poles.shape[-1]),
                "fir": fir,
                "mean_error": float(error.mean()),
                "max_error": float(error.max()),
            }
        )
    return StudentFit(fits, rows)


# ------------------------------------------------------------------------------------ a whole model
