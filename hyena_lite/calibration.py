"""Calibrate a converted student on data: rescale each Hyena mixer so its output best matches the
attention it replaces.

A teacher-seeded Hyena operator computes q * (h * (k * v)) channel by channel, with no softmax to
bound it, so its output can be orders of magnitude larger than the attention output it stands for
(SmolLM2-135M at 1,024 tokens: 417x to 5,038x by RMS across its 30 layers,
smollm2_h200_24.6M.json), and the student starts at a perplexity of millions.
`calibrate_mixers` fixes the scale with one or two teacher forward passes and no training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hyena_lite.capture import capture_mixers, run_until_stop
from hyena_lite.students import HyenaMixer, family_of, layer_mixers

# fn(layer, teacher's input to the layer's mixer [B, L, D], its output [B, L, D], kept positions [B,
# L] or None)
LayerFn = Callable[[int, torch.Tensor, torch.Tensor, "torch.Tensor | None"], None]


def calibrate_mixers(
    student: nn.Module,
    teacher: nn.Module,
    ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    gates: bool = True,
    batch_size: int = 8,
) -> dict[int, dict[str, float]]:
    """Rescale each Hyena mixer of `student` on the teacher's inputs to its layer (teacher forcing),
    in place.

    Scale out_proj (weight and bias) by the least-squares alpha = <s, t> / <s, s>, s the mixer's
    output and t the teacher's attention output. Least squares, not RMS matching: alpha minimises
    ||alpha s - t||^2, so the normalised error becomes 1 - corr(s, t)^2 <= 1, whereas matching the
    RMS of an output uncorrelated with t (the usual case at initialisation) would leave an error of
    about 2, twice that of a mixer that outputs zero. alpha may be small or negative: it keeps what
    s explains of t.

    With gates=True, first multiply each gate x^n (its short-filter rows, weight and bias) by one
    number, so
    that every step of the recurrence z^n = x^n * (h^n * z^(n-1) + D^n z^(n-1)), z^0 = v, keeps the
    RMS of v.
    That only moves the scale from out_proj into the gates (alpha then absorbs what is left, and the
    mixer
    computes what alpha alone would give it, up to out_proj's bias), but it matters for training:
    alone,
    alpha can be 1e-5 in front of a huge inner output, and the first optimiser steps on out_proj
    blow the
    error up again. One number per gate, not per channel, keeps the direction of the seeded output.

    Sums run over the tokens of `ids` [batch, length] whose attention_mask is 1, in chunks of
    `batch_size` rows; calibrate at the sequence length you train at (the long filters' sums grow
    with it). Returns, per Hyena layer: alpha, the normalised MSE before and after, and the RMS
    ratio |s| / |t| before.
    """
    if not torch.is_tensor(ids) or ids.dim() != 2 or ids.numel() == 0 or ids.is_floating_point():
        shape = tuple(ids.shape) if torch.is_tensor(ids) else type(ids).__name__
        raise ValueError(
            f"ids must be a non-empty [batch, length] tensor of token ids, got {shape}"
        )
    if attention_mask is not None and attention_mask.shape != ids.shape:
        raise ValueError(
            f"attention_mask {tuple(attention_mask.shape)} must have the shape of ids "
            f"{tuple(ids.shape)}"
        )
    _check_pair(student, teacher)
    mixers = layer_mixers(student)
    hyena = [i for i, m in enumerate(mixers) if isinstance(m, HyenaMixer)]
    if not hyena:
        return {}
    modes = (student.training, teacher.training)
    student.eval()
    teacher.eval()
    try:
        before = {i: torch.zeros(3, dtype=torch.float64) for i in hyena}  # <s, t>, <s, s>, <t, t>
        energy = {i: torch.zeros(mixers[i].operator.order + 1, dtype=torch.float64) for i in hyena}
        measure, recurrence = _output_sums(mixers, before), _recurrence_energy(mixers, energy)
        _teacher_pass(
            teacher,
            hyena,
            ids,
            attention_mask,
            batch_size,
            (lambda *a: (measure(*a), recurrence(*a))) if gates else measure,
        )
        if gates:
            for i in hyena:
                _scale_gates(mixers[i].operator, energy[i])
            after = {i: torch.zeros(3, dtype=torch.float64) for i in hyena}
            _teacher_pass(
                teacher, hyena, ids, attention_mask, batch_size, _output_sums(mixers, after)
            )
        else:
            after = before
    finally:
        student.train(modes[0])
        teacher.train(modes[1])
    return {i: _scale_output(mixers[i], before[i].tolist(), after[i].tolist()) for i in hyena}


def _check_pair(student: nn.Module, teacher: nn.Module) -> None:
    """ValueError unless `student` is a Hyena student and `teacher` a teacher of the same family and
    shape."""
    family = family_of(student)
    if not isinstance(student, family.student_class):
        raise ValueError(
            f"{type(student).__name__} is not a Hyena student; calibrate the student that "
            f"hyena_lite.convert(teacher) returns, with that teacher"
        )
    if family_of(teacher) is not family or isinstance(teacher, family.student_class):
        raise ValueError(
            f"the teacher must be the {family.teacher_class.__name__} the student was converted "
            f"from, got {type(teacher).__name__}"
        )
    shape = ("num_hidden_layers", "hidden_size")
    if any(getattr(student.config, k) != getattr(teacher.config, k) for k in shape):
        raise ValueError(
            "student and teacher differ in shape: "
            + ", ".join(
                f"{k} {getattr(student.config, k)} vs {getattr(teacher.config, k)}" for k in shape
            )
        )


def _teacher_pass(
    teacher: nn.Module,
    layers: list[int],
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    batch_size: int,
    fn: LayerFn,
) -> None:
    """Run the teacher's body over ids in chunks, up to the last of `layers`; call fn on the input
    and output of each of their attentions."""
    device = next(teacher.parameters()).device
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            rows = slice(start, start + batch_size)
            chunk_mask = None if mask is None else mask[rows].to(device)
            with capture_mixers(teacher, layers) as io:
                run_until_stop(
                    lambda rows=rows, chunk_mask=chunk_mask: teacher.base_model(
                        input_ids=ids[rows].to(device), attention_mask=chunk_mask
                    )
                )
            for layer in layers:
                fn(layer, io[layer]["input"], io[layer]["output"], chunk_mask)


def _on(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    param = next(module.parameters())
    return x.to(param.device, param.dtype)


def _output_sums(mixers: list[nn.Module], sums: dict[int, torch.Tensor]) -> LayerFn:
    """Add <s, t>, <s, s>, <t, t> (float64, kept positions) of each student mixer's output s and the
    teacher's t."""

    def fn(
        layer: int, hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
    ) -> None:
        s = mixers[layer](_on(mixers[layer], hidden))[0].to(target.device).double()
        t = target.double()
        if mask is not None:
            keep = mask[..., None].to(t)
            s, t = s * keep, t * keep
        sums[layer] += torch.stack([(s * t).sum(), s.pow(2).sum(), t.pow(2).sum()]).cpu()

    return fn


def _recurrence_energy(mixers: list[nn.Module], energy: dict[int, torch.Tensor]) -> LayerFn:
    """Add the sums of squares of z^0 = v, z^1, ..., z^N of each mixer's recurrence (kept
    positions)."""

    def fn(
        layer: int, hidden: torch.Tensor, _target: torch.Tensor, mask: torch.Tensor | None
    ) -> None:
        operator = mixers[layer].operator
        u = _on(operator, hidden)
        keep = 1.0 if mask is None else mask[:, None, :].to(u.device, torch.float64)
        rows = [(z * keep).pow(2).sum() for z in operator.recurrence(u, torch.float64)]
        energy[layer] += torch.stack(rows).cpu()

    return fn


def _scale_gates(operator: nn.Module, energy: torch.Tensor) -> None:
    """Multiply gate n by rms(z^(n-1)) / rms(z^n), so that each step keeps the RMS of v (by 1 where
    either is 0).

    The recurrence is linear in each gate, so a factor on gate n scales z^n, z^(n+1), ... alike:
    gate n's
    factor is the ratio of the unscaled energies of consecutive steps.
    """
    d = operator.d_model
    conv = operator.short_filter
    with torch.no_grad():
        for n, (previous, current) in enumerate(
            zip(energy[:-1].tolist(), energy[1:].tolist(), strict=False)
        ):
            factor = (previous / current) ** 0.5 if previous > 0 and current > 0 else 1.0
            conv.weight[n * d : (n + 1) * d] *= factor
            if conv.bias is not None:
                conv.bias[n * d : (n + 1) * d] *= factor


def _scale_output(mixer: HyenaMixer, before: list[float], after: list[float]) -> dict[str, float]:
    """Multiply out_proj by the least-squares alpha of the sums `after` (1 when s is all zeros), and
    report."""
    st, ss, tt = after
    alpha = st / ss if ss > 0 else 1.0
    out = mixer.operator.out_proj
    with torch.no_grad():
        out.weight.mul_(alpha)
        if out.bias is not None:
            out.bias.mul_(alpha)
    energy = max(tt, 1e-300)
    return {
        "alpha": alpha,
        "nmse_before": (before[2] - 2 * before[0] + before[1]) / energy,
        "nmse_after": (tt - 2 * alpha * st + alpha * alpha * ss) / energy,
        "rms_ratio_before": (before[1] / energy) ** 0.5,
    }
