"""Forward hooks that record what the token mixers of a model see and produce, layer by layer, and
can end the forward pass once the last wanted layer has run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from hyena_lite.students import layer_mixers


class _Stop(Exception):
    """Raised by a hook to end a forward pass early once the wanted activation is captured."""


def _hidden_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    """A mixer's input as a forward hook sees it: args[0] (GPT-2, GPT-NeoX) or
    kwargs["hidden_states"] (Llama)."""
    return args[0] if args else kwargs["hidden_states"]


def first_output(output: Any) -> torch.Tensor:
    """A module's main output: the first element of a tuple output (attention modules), else the
    output."""
    return output[0] if isinstance(output, (tuple, list)) else output


@contextmanager
def capture_mixers(
    model: nn.Module, layers: list[int], stop: bool = True
) -> Iterator[dict[int, dict[str, torch.Tensor]]]:
    """Record the input and output of the token mixers of `layers` during the next forward pass, by
    layer.

    With stop=True the pass ends right after the last of them (call the model inside
    `run_until_stop`).
    Taught in chapter 6.
    """
    captured: dict[int, dict[str, torch.Tensor]] = {}
    mixers, last = layer_mixers(model), max(layers)

    def hook_for(layer: int):
        def hook(_module, args, kwargs, output):
            captured.setdefault(layer, {}).update(
                input=_hidden_arg(args, kwargs), output=first_output(output)
            )
            if stop and layer == last:
                raise _Stop

        return hook

    handles = [
        mixers[layer].register_forward_hook(hook_for(layer), with_kwargs=True) for layer in layers
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_mixer(
    model: nn.Module, layer: int, stop: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the input and output of the token mixer of `layer` during the next forward pass.

    With stop=True the pass ends right after that mixer (call the model inside `run_until_stop`).
    Taught in chapter 6.
    """
    with capture_mixers(model, [layer], stop) as captured:
        yield captured.setdefault(layer, {})


def run_until_stop(fn: Callable[[], Any]) -> None:
    """Call fn, treating an early stop raised by `capture_mixer` as normal completion.
    Taught in chapter 6."""
    try:
        fn()
    except _Stop:
        pass
