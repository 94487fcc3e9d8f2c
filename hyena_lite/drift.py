"""How far a student strays from its teacher, layer by layer, on given windows.

Three measures, all normalised squared errors against the teacher (0: identical, 1: as far as
zeros): "mixer", each Hyena mixer fed the teacher's own input to its layer (the alignment error
that the `transfer` stage minimises, on any text); "hidden", the student's residual stream after
each block against the teacher's (the last after the final norm, as transformers returns it), each
model run on its own, token by token, every token weighing the same (how far the error has
carried); and "first_token", the same at each window's first position alone. Llama-style teachers
write a massive activation there (SmolLM2-135M from block 11 on: a norm over 150 times the median
token's, about 97% of a 1,024-token window's energy, its attention sink; Sun et al., 2024;
smollm2_sink_cpu.json), so a window-level error of the stream would measure that one token;
"first_token" keeps it apart. Scored on the training text's windows and on text never trained on,
they tell whether a student's mixers, or only its stream, fall behind out of domain. Taught in
chapter 12.
"""

from __future__ import annotations

import torch
from torch import nn

from hyena_lite.capture import capture_mixers, first_output
from hyena_lite.losses import normalized_mse, token_nmse
from hyena_lite.probes import model_device
from hyena_lite.students import HyenaMixer, layer_mixers


@torch.inference_mode()
def layer_drift(
    student: nn.Module, teacher: nn.Module, windows: torch.Tensor, batch_size: int = 8
) -> dict[str, dict[int, float]]:
    """{"mixer": {Hyena layer: NMSE}, "hidden": {layer: error}, "first_token": {layer: error}}
    over `windows` [N, L] of token ids: the mixers' NMSE each window weighing the same, the
    stream's per-token error each token (or each first token) weighing the same; the teacher on
    the student's device."""
    if windows.dim() != 2 or len(windows) == 0:
        raise ValueError(f"windows must be a non-empty [N, L] tensor of ids, got {windows.shape}")
    mixers = layer_mixers(student)
    hyena = [i for i, m in enumerate(mixers) if isinstance(m, HyenaMixer)]
    if not hyena:
        raise ValueError("the student has no Hyena mixer: there is no alignment to measure")
    if len(layer_mixers(teacher)) != len(mixers):
        raise ValueError(
            f"the student has {len(mixers)} layers and the teacher {len(layer_mixers(teacher))}: "
            f"give the teacher the student was made from"
        )
    device = model_device(student)
    layers = range(len(mixers))
    sums = {
        "mixer": dict.fromkeys(hyena, 0.0),
        "hidden": dict.fromkeys(layers, 0.0),
        "first_token": dict.fromkeys(layers, 0.0),
    }
    for start in range(0, len(windows), batch_size):
        ids = windows[start : start + batch_size].to(device)
        with capture_mixers(teacher, hyena, stop=False) as io:
            theirs = teacher(input_ids=ids, output_hidden_states=True).hidden_states
        mine = student(input_ids=ids, output_hidden_states=True).hidden_states
        for layer in hyena:
            got = first_output(mixers[layer](io[layer]["input"]))
            sums["mixer"][layer] += _summed_nmse(got, io[layer]["output"])
        for layer in layers:
            error = token_nmse(mine[layer + 1], theirs[layer + 1])
            sums["hidden"][layer] += float(error.mean(-1).sum())
            sums["first_token"][layer] += float(error[:, 0].sum())
    return {
        kind: {layer: total / len(windows) for layer, total in by_layer.items()}
        for kind, by_layer in sums.items()
    }


def _summed_nmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    """The sum over a batch's windows [B, L, D] of each window's normalised MSE."""
    return sum(float(normalized_mse(p, t)) for p, t in zip(pred, target, strict=True))
