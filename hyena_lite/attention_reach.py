"""Attention with a short reach: inside `local_attention(model, window, global_layers)` every
attention layer of a Hugging Face model outside `global_layers` sees only the last `window`
positions (itself included), the layers in `global_layers` everything before them.

A Hyena layer mixes tokens by position, not by looking content up at a variable distance; a
teacher whose other layers are cut to a short window is a training-free estimate of what a hybrid
keeping attention only in `global_layers` can copy (issue 20). With `sink` > 0 the local layers
also see the first `sink` positions: trained transformers park attention there (the "attention
sink" of StreamingLLM, Xiao et al. 2023), and a window without it breaks the model for reasons
that have nothing to do with recall. Works through transformers 5's
attention interface (`AttentionInterface`, `AttentionMaskInterface`), on models whose kernel is
"sdpa" or "eager" (Llama, GPT-2, ...); the model is restored on exit, also after an error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

KERNELS = ("sdpa", "eager")  # the attention kernels whose masks this module knows how to narrow
_NAME = "hyena_lite_local_{}"  # the registered implementation wrapping each kernel


@dataclass(frozen=True)
class _Reach:
    """One attention module's reach inside the context: `window` positions (None: all) and the
    kernel that does the work."""

    window: int | None
    sink: int
    kernel: Callable


_ACTIVE: dict[int, _Reach] = {}  # id(attention module) -> its reach, while inside the context


def attention_layers(model: torch.nn.Module) -> dict[int, torch.nn.Module]:
    """The causal self-attention modules of a model by layer index (modules with a `layer_idx`
    and `is_causal` set, as transformers 5's Llama and GPT-2 attention)."""
    layers: dict[int, torch.nn.Module] = {}
    for module in model.modules():
        index = getattr(module, "layer_idx", None)
        if isinstance(index, int) and getattr(module, "is_causal", False) is True:
            if index in layers:
                raise ValueError(
                    f"{type(model).__name__} has two causal attention modules with layer_idx "
                    f"{index}: local_attention handles one self-attention per layer"
                )
            layers[index] = module
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no causal attention modules with a layer_idx: "
            f"local_attention needs a transformers 5 model whose attention goes through "
            f"AttentionInterface (Llama, GPT-2, ...)"
        )
    return dict(sorted(layers.items()))


def _kernel(model: torch.nn.Module, implementation: str, module: torch.nn.Module) -> Callable:
    """The function that computes attention for `implementation` in the module's model file."""
    if implementation == "sdpa":
        return ALL_ATTENTION_FUNCTIONS["sdpa"]
    if implementation == "eager":
        if getattr(model.config, "reorder_and_upcast_attn", False):
            raise ValueError(
                "GPT-2 with reorder_and_upcast_attn and the eager kernel bypasses the attention "
                "interface: call model.set_attn_implementation('sdpa') first"
            )
        eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
        if eager is None:
            raise ValueError(
                f"{type(module).__module__} defines no eager_attention_forward: call "
                f"model.set_attn_implementation('sdpa') first"
            )
        return eager
    raise ValueError(
        f"local_attention narrows the masks of the {' and '.join(KERNELS)} kernels, and "
        f"{type(model).__name__} uses {implementation!r}: call "
        f"model.set_attn_implementation('sdpa') first"
    )


def window_band(
    q_length: int, kv_length: int, window: int, sink: int = 0, device=None
) -> torch.Tensor:
    """[q_length, kv_length] booleans: True where a query (the last q_length of kv_length
    positions) may see a key, i.e. the key is one of the query's last `window` positions or one of
    the first `sink` positions, and not after the query."""
    queries = torch.arange(kv_length - q_length, kv_length, device=device)[:, None]
    keys = torch.arange(kv_length, device=device)[None, :]
    return (keys <= queries) & ((queries - keys < window) | (keys < sink))


def _narrowed(
    mask: torch.Tensor | None,
    query: torch.Tensor,
    key: torch.Tensor,
    reach: _Reach,
    sdpa: bool,
) -> torch.Tensor:
    """The layer's mask (None, boolean "may attend", or additive float) with every key further
    back than the reach's window (and not a sink) masked out, in the kernel's format."""
    q_length, kv_length = query.shape[-2], key.shape[-2]
    if mask is not None and mask.shape[-1] != kv_length:
        raise ValueError(
            f"the attention mask covers {mask.shape[-1]} keys and the layer has {kv_length}: "
            f"local_attention supports full forward passes and dynamic caches, not static ones"
        )
    band = window_band(q_length, kv_length, reach.window, reach.sink, key.device)
    if mask is None:
        if sdpa:
            return band[None, None]
        return torch.zeros(band.shape, dtype=query.dtype, device=key.device).masked_fill(
            ~band, torch.finfo(query.dtype).min
        )[None, None]
    if mask.dtype == torch.bool:
        return mask & band
    return mask.masked_fill(~band, torch.finfo(mask.dtype).min)


def _attention(module, query, key, value, attention_mask, **kwargs):
    """The registered attention function: the module's kernel, with the mask narrowed to the
    module's window where it has one shorter than the keys."""
    reach = _ACTIVE.get(id(module))
    if reach is None:
        raise RuntimeError(
            "a hyena_lite_local attention implementation ran outside local_attention: "
            "restore the model's kernel with model.set_attn_implementation('sdpa')"
        )
    if reach.window is not None and reach.window + reach.sink < key.shape[-2]:
        sdpa = reach.kernel is ALL_ATTENTION_FUNCTIONS["sdpa"]
        attention_mask = _narrowed(attention_mask, query, key, reach, sdpa)
    return reach.kernel(module, query, key, value, attention_mask, **kwargs)


def _register(implementation: str) -> str:
    """Register (once) the local implementation wrapping a kernel, with the kernel's masks."""
    name = _NAME.format(implementation)
    AttentionInterface.register(name, _attention)
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[implementation])
    return name


@contextmanager
def local_attention(
    model: torch.nn.Module, window: int, global_layers: Iterable[int] = (), sink: int = 0
) -> Iterator[torch.nn.Module]:
    """Inside, every attention layer of `model` not in `global_layers` attends only to the last
    `window` positions (itself included) and the first `sink` positions; on exit (also on error)
    the model's attention implementation is restored. Layers are numbered from 0 as the model's
    `layer_idx`."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a whole number of positions >= 1, got {window!r}")
    if isinstance(sink, bool) or not isinstance(sink, int) or sink < 0:
        raise ValueError(f"sink must be a whole number of positions >= 0, got {sink!r}")
    if not hasattr(model, "set_attn_implementation") or not hasattr(model, "config"):
        raise ValueError(
            f"{type(model).__name__} is not a transformers PreTrainedModel: local_attention "
            f"switches the model's attention implementation"
        )
    layers = attention_layers(model)
    chosen = list(global_layers)
    unknown = sorted(
        {i for i in chosen if isinstance(i, bool) or not isinstance(i, int) or i not in layers},
        key=repr,
    )
    if unknown:
        raise ValueError(
            f"unknown attention layers {unknown}: {type(model).__name__} has layers "
            f"0..{max(layers)} (give global_layers as layer indices)"
        )
    if any(id(module) in _ACTIVE for module in layers.values()):
        raise RuntimeError("the model is already inside local_attention: leave it first")
    before = model.config._attn_implementation
    kernel = _kernel(model, before, next(iter(layers.values())))
    name = _register(before)
    for index, module in layers.items():
        _ACTIVE[id(module)] = _Reach(None if index in chosen else window, sink, kernel)
    try:
        model.set_attn_implementation(name)
        if model.config._attn_implementation != name:
            raise ValueError(
                f"{type(model).__name__} does not take attention implementations through "
                f"AttentionInterface (its implementation stayed {before!r})"
            )
        yield model
    finally:
        if model.config._attn_implementation != before:
            model.set_attn_implementation(before)
        for module in layers.values():
            _ACTIVE.pop(id(module), None)
