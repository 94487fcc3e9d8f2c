"""Hugging Face `generate()` on the recurrent state of a Hyena student.

Each Hyena layer keeps its decoding state in the model's transformers `Cache`, in a subclass of the
layer class transformers has for recurrent (linear-attention, Mamba-like) layers,
`LinearAttentionLayer`: the short filter's window and the FIR head's last inputs as its two conv
states, the modal state as its recurrent state, every one with the batch first, so that beam
search's `reorder_cache` works. The student's config lists its layer types, so `HyenaCache(config)`
(what a student's `generate()` makes) holds such a layer for Hyena layers and a key-value layer for
attention layers only; its Hyena layers count the tokens they have seen, so that the cache answers
`get_seq_length` even when no layer attends (transformers' `LinearAttentionLayer` counts none before
5.2x, where `Cache.get_seq_length` asks attention layers only). The prompt is prefilled and each new
token decoded by `hyena_lite.decoding.RecurrentDecoder`, O(1) per token.

The modal fit of each layer's filters is kept in buffers of its mixer (`ModalFitBuffers`), so it
is saved and loaded with the weights; it is fitted once, on first use or by `fit_recurrent_states`,
and fitted again only when the filters have changed since. Taught in chapter 10.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

import torch
import transformers
from torch import Tensor, nn
from transformers.cache_utils import Cache, DynamicCache

try:  # transformers 5.14 made LinearAttentionLayer keep several states, as a Hyena layer needs
    from transformers.cache_utils import LinearAttentionLayer

    _SEVERAL_STATES = "number_of_states" in inspect.signature(LinearAttentionLayer).parameters
except ImportError:
    _SEVERAL_STATES = False
if not _SEVERAL_STATES:
    raise ImportError(
        f"hyena_lite needs transformers>=5.14 (a LinearAttentionLayer with several states), found "
        f"{transformers.__version__}: pip install -U 'transformers>=5.14,<6'"
    )

from hyena_lite.modal import ModalFilter
from hyena_lite.operator import HyenaOperator

if TYPE_CHECKING:
    from hyena_lite.decoding import RecurrentDecoder

HYENA_LAYER_TYPE = "linear_attention"  # the config layer type that makes a LinearAttentionLayer
CONV_STATES = 2  # conv state 0: the short filter's window; 1: the FIR head's last inputs
WINDOW, RECENT, MODAL = 0, 1, 0  # conv state, conv state, recurrent state
MODAL_ORDER, MODAL_FIR = 16, 2  # the stored fit: real order, and taps kept exactly

log = logging.getLogger(__name__)


class ModalFitBuffers(nn.Module):
    """The modal fit of one Hyena operator's C = order * d_model long filters, as float32 buffers
    saved with the weights: poles and residues [C, modes, 2] (real, imaginary) and the exact head
    [C, fir]. A fit is valid while its head equals the filters' first `fir` taps; the buffers start
    at zero (finite, as checkpoints require; it matches only zero filters, whose fit it is), may be
    missing from older checkpoints, and keep float32 under `model.to(dtype)` (a pole near the unit
    circle does not survive bfloat16)."""

    def __init__(self, channels: int, modes: int, fir: int) -> None:
        super().__init__()
        for name, shape in (
            ("poles", (channels, modes, 2)),
            ("residues", (channels, modes, 2)),
            ("fir", (channels, fir)),
        ):
            self.register_buffer(name, torch.zeros(shape, dtype=torch.float32))

    def _apply(self, fn: Any, recurse: bool = True) -> ModalFitBuffers:
        """Follow the model's device moves but keep float32 (fn applied to an empty probe tells
        the device)."""
        for name, buffer in self._buffers.items():
            device = fn(torch.empty(0, device=buffer.device)).device
            self._buffers[name] = buffer.to(device=device, dtype=torch.float32)
        return self

    def _load_from_state_dict(
        self, state_dict: dict, prefix: str, local_metadata: Any, strict: bool, missing: list, *a
    ) -> None:
        """Load the fit when the checkpoint has one; a checkpoint from before this fit existed
        loads with no fit (it is fitted on first use), not as an error."""
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, *a)
        missing[:] = [key for key in missing if not key.startswith(prefix)]

    def store(self, fit: ModalFilter) -> None:
        """Keep `fit` (its modes padded with poles and residues 0, which add nothing)."""
        modes = fit.poles.shape[-1]
        if modes > self.poles.shape[1] or fit.fir.shape != self.fir.shape:
            raise ValueError(
                f"a fit of {modes} modes and head {tuple(fit.fir.shape)} does not fit buffers of "
                f"{self.poles.shape[1]} modes and head {tuple(self.fir.shape)}: fit with "
                f"order {self.poles.shape[1]} and fir {self.fir.shape[-1]}"
            )
        with torch.no_grad():
            self.poles.zero_()
            self.residues.zero_()
            self.poles[:, :modes] = torch.view_as_real(fit.poles.to(torch.complex64)).to(self.poles)
            self.residues[:, :modes] = torch.view_as_real(fit.residues.to(torch.complex64)).to(
                self.residues
            )
            self.fir.copy_(fit.fir)

    def fit(self, order: int) -> ModalFilter:
        """The stored fit (real order `order`), in complex64/float32."""
        return ModalFilter(
            torch.view_as_complex(self.poles.contiguous()),
            torch.view_as_complex(self.residues.contiguous()),
            self.fir,
            order,
        )

    def matches(self, op: HyenaOperator) -> bool:
        """Whether the stored fit belongs to op's filters as they are now: its head equals their
        first taps up to the rounding of op's dtype (a float32 fit serves a bfloat16 copy)."""
        taps = self.fir.shape[-1]
        with torch.no_grad():
            k, _ = op.long_filters(taps)
        head = k.reshape(-1, taps).float().to(self.fir.device)
        dtype = op.out_proj.weight.dtype
        rtol = max(1e-4, 4 * torch.finfo(dtype).eps) if dtype.is_floating_point else 1e-4
        atol = rtol * float(head.abs().max())
        return bool(torch.allclose(head, self.fir, rtol=rtol, atol=atol))


def ensure_fit(mixer: nn.Module) -> None:
    """Fit the mixer's filters (order MODAL_ORDER, or what shorter filters hold; head MODAL_FIR)
    and store the fit, unless it already holds theirs."""
    from hyena_lite.decoding import fit_operator  # decoding imports students, which import us

    op, buffers = mixer.operator, mixer.modal_fit
    if not buffers.matches(op):
        log.info("fitting the modal states of Hyena layer %d once", mixer.layer_idx)
        fir = buffers.fir.shape[-1]
        order = min(mixer.modal_order, (op.l_max - fir) // 2)
        fit, _ = fit_operator(op, order, fir)
        buffers.store(fit)


def fitted_decoder(mixer: nn.Module) -> RecurrentDecoder:
    """A RecurrentDecoder of the mixer's operator from its stored modal fit (`ensure_fit`)."""
    from hyena_lite.decoding import RecurrentDecoder

    ensure_fit(mixer)
    return RecurrentDecoder(mixer.operator, mixer.modal_fit.fit(mixer.modal_order))


def fit_recurrent_states(model: nn.Module) -> dict[int, ModalFilter]:
    """The stored modal fit of every Hyena layer of a student, by layer index, fitting and storing
    first those missing or stale (call it before `save_pretrained` to save them)."""
    fits = {}
    for mixer in model.modules():
        if isinstance(getattr(mixer, "modal_fit", None), ModalFitBuffers):
            ensure_fit(mixer)
            fits[mixer.layer_idx] = mixer.modal_fit.fit(mixer.modal_order)
    return fits


class HyenaCacheLayer(LinearAttentionLayer):
    """A Hyena layer's part of the cache: LinearAttentionLayer's conv and recurrent states, and the
    number of tokens they have seen, which it reports as its sequence length."""

    def __init__(self, number_of_states: int = CONV_STATES, **kwargs: Any) -> None:
        super().__init__(number_of_states=number_of_states, **kwargs)
        self.tokens_seen = 0

    def get_seq_length(self) -> int:
        """Tokens seen so far (a Python int: reading it never waits for the device)."""
        return self.tokens_seen

    def reset(self) -> None:
        """Zero the states, and the count of tokens seen, keeping the tensors."""
        super().reset()
        self.tokens_seen = 0


class HyenaCache(DynamicCache):
    """The cache of a student: `DynamicCache(config=config)` with a HyenaCacheLayer for each Hyena
    layer; its sequence length, asked of a Hyena layer, is the tokens that layer has seen (so a
    student without attention layers answers it on every transformers 5.x)."""

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
        self.layers = [
            HyenaCacheLayer(layer.number_of_states)
            if isinstance(layer, LinearAttentionLayer)
            else layer
            for layer in self.layers
        ]

    @property
    def is_compileable(self) -> bool:
        """False: a Hyena layer decodes through a Python decoder object, which generate() must
        not compile (nor build 4-D masks for, as it does for a compileable cache)."""
        return False

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens seen by layer `layer_idx` (0 when it holds none yet)."""
        if layer_idx < len(self.layers) and isinstance(self.layers[layer_idx], HyenaCacheLayer):
            return self.layers[layer_idx].get_seq_length()
        return super().get_seq_length(layer_idx)


def use_hyena_cache(model_kwargs: dict[str, Any], config: Any) -> None:
    """Replace the default DynamicCache that generate() put in `model_kwargs` by a HyenaCache of
    `config` (a cache the caller gave, or any other kind, is kept)."""
    for name in ("past_key_values", "cache"):
        if type(model_kwargs.get(name)) is DynamicCache:
            model_kwargs[name] = HyenaCache(config)


def stored_fits(model: nn.Module, order: int) -> dict[int, ModalFilter] | None:
    """The modal fits stored with a student (`fit_recurrent_states`: fitted and stored first
    where missing or stale), when every Hyena layer keeps one of real order `order`; None when
    some layer keeps none or `order` is not the stored order."""
    from hyena_lite.decoding import hyena_operators

    mixers = [
        mixer
        for mixer in model.modules()
        if isinstance(getattr(mixer, "modal_fit", None), ModalFitBuffers)
    ]
    keeps = sorted(mixer.layer_idx for mixer in mixers if mixer.modal_order == order)
    if not keeps or keeps != sorted(hyena_operators(model)):
        return None
    return fit_recurrent_states(model)


def _cache_layer(cache: Cache, layer_idx: int) -> HyenaCacheLayer:
    """The cache's layer for Hyena layer `layer_idx`; ValueError when the cache is not a
    HyenaCache of the student's config."""
    layer = cache.layers[layer_idx] if layer_idx < len(cache.layers) else None
    if not isinstance(layer, HyenaCacheLayer):
        raise ValueError(
            f"layer {layer_idx} is a Hyena layer but its cache layer is a "
            f"{type(layer).__name__}: make the cache from the student's config, "
            f"hyena_lite.hf_cache.HyenaCache(model.config), which keeps a HyenaCacheLayer for it"
        )
    return layer


def _keep(layer: HyenaCacheLayer, decoder: RecurrentDecoder, length: int) -> None:
    """Move a prefilled decoder's state into the cache layer, batch first (static addresses)."""
    states = {
        ("conv", WINDOW): decoder.window,
        ("conv", RECENT): decoder.recent.transpose(0, 1),  # [B, N, D, F]
        ("recurrent", MODAL): decoder.state.transpose(0, 1),  # [B, N, D, modes]
    }
    for (kind, index), tensor in states.items():
        layer.lazy_initialization(**{f"{kind}_states": tensor}, state_idx=index)
        getattr(layer, f"{kind}_states")[index].copy_(tensor)
        layer.has_previous_state[index] = True
    layer.tokens_seen = length


def cached_forward(mixer: nn.Module, hidden: Tensor, cache: Cache) -> Tensor:
    """The Hyena mixer's output [B, T, D] for hidden [B, T, D], decoding on the state kept in
    `cache`: a prefill (left pads, 0 in the mixer's `pad_mask`, left out) when the cache has none
    for this layer, otherwise T recurrent steps."""
    layer = _cache_layer(cache, mixer.layer_idx)
    if not layer.has_previous_state[WINDOW]:
        mixer.decoder = fitted_decoder(mixer)
        out = mixer.decoder.prefill(hidden, mixer.pad_mask)
        _keep(layer, mixer.decoder, hidden.shape[1])
        return mixer.with_first_token(hidden, out, mixer.pad_mask)
    decoder = getattr(mixer, "decoder", None) or fitted_decoder(mixer)
    mixer.decoder = decoder
    decoder.resume(
        [
            layer.conv_states[WINDOW],
            layer.recurrent_states[MODAL].transpose(0, 1),
            layer.conv_states[RECENT].transpose(0, 1),
        ]
    )
    out = decoder.extend(hidden)
    layer.tokens_seen += hidden.shape[1]
    return out
