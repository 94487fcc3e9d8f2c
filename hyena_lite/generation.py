"""Generation with a causal LM, teacher or Hyena student: `Decoder` (prefill, then step),
`generate`, and the perplexity of a decoding mode.

A student's Hyena layers decode with `hyena_lite.decoding` (mode "cached" or "recurrent");
attention layers of hybrid students (and teachers) keep their key-value cache; mode "full"
re-runs the whole sequence per token. Taught in chapter 10.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from hyena_lite.cudagraph import record
from hyena_lite.decoding import (
    CachedDecoder,
    OperatorDecoder,
    RecurrentDecoder,
    fit_student,
    hyena_operators,
)
from hyena_lite.hf_cache import stored_fits
from hyena_lite.losses import validation_loss
from hyena_lite.modal import ModalFilter
from hyena_lite.students import family_of, kv_cache_argument

MODES = ("full", "cached", "recurrent")


class _DecodingMixer(nn.Module):
    """Stands in for a HyenaMixer while decoding: the same call, answered by an OperatorDecoder,
    with the mixer's first-token path (if it has one) at the sequence's first position."""

    def __init__(self, mixer: nn.Module, decoder: OperatorDecoder) -> None:
        super().__init__()
        self.mixer = mixer
        self.decoder = decoder

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Tensor, None]:
        hidden = args[0] if args else kwargs["hidden_states"]
        starts = self.decoder.length == 0  # this call holds the sequence's first position
        out = self.decoder(hidden)
        return (self.mixer.with_first_token(hidden, out) if starts else out), None


def _new_cache(model: nn.Module, hyena_layers: list[int]) -> Any:
    """A key-value cache for the attention layers; Hyena layers get placeholders so that masks size
    correctly."""
    from transformers import DynamicCache

    if not hyena_layers:
        return DynamicCache(config=model.config)
    try:
        from transformers.cache_utils import Cache, DummyLayer, DynamicLayer
    except ImportError:  # older transformers 5.x: no placeholder layers
        return DynamicCache(config=model.config)
    n = model.config.num_hidden_layers
    return Cache(layers=[DummyLayer() if i in hyena_layers else DynamicLayer() for i in range(n)])


class Decoder:
    """Decode a causal LM (teacher or student) token by token: `prefill(ids)`, then `step(tokens)`.

    mode 'full' re-runs the whole sequence per token; 'cached' and 'recurrent' decode Hyena layers
    with `CachedDecoder` / `RecurrentDecoder` (attention layers use their key-value cache; a teacher
    in 'cached' mode is plain KV-cache decoding). Use it as a context manager: it swaps the Hyena
    mixers on entry.

    Recurrent mode decodes with `fits` when given; otherwise with the modal fit stored in the
    student's buffers (`hyena_lite.hf_cache.stored_fits`: fitted once, again only when the filters
    have changed) when `order` is the stored order (16), else with a fit of order `order` made now.

    cuda_graph=True (recurrent mode, CUDA, a student without attention layers) captures one decoding
    step in a CUDA graph after the prefill and replays it: the state is fixed in size and updated in
    place, so a step is one graph launch instead of hundreds of kernel launches.
    Taught in chapter 10.
    """

    def __init__(
        self,
        model: nn.Module,
        mode: str = "cached",
        fits: dict[int, ModalFilter] | None = None,
        order: int = 16,
        capacity: int | None = None,
        cuda_graph: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown decoding mode {mode!r}; choose one of {', '.join(MODES)}")
        self.model, self.mode = model, mode
        self.family = family_of(model)
        self.operators = hyena_operators(model)
        if mode == "recurrent" and not self.operators:
            raise ValueError(
                "mode='recurrent' needs a Hyena student; decode a transformer with mode='cached' "
                "(KV cache)"
            )
        if mode == "recurrent" and fits is None:
            fits = stored_fits(model, order) or fit_student(model, order).fits
        if mode == "cached":
            self.decoders = {i: CachedDecoder(op, capacity) for i, op in self.operators.items()}
        elif mode == "recurrent":
            missing = sorted(set(self.operators) - set(fits))
            if missing:
                raise ValueError(
                    f"no modal fit for Hyena layers {missing}; fit them with fit_student(model)"
                )
            self.decoders = {i: RecurrentDecoder(op, fits[i]) for i, op in self.operators.items()}
        else:
            self.decoders = {}
        self.cache_name = kv_cache_argument(model)
        self.ids: Tensor | None = None
        self.cache: Any = None
        self.position = 0
        self._swapped: list[tuple[nn.Module, nn.Module]] = []
        self.cuda_graph = cuda_graph
        if cuda_graph and (
            mode != "recurrent" or len(self.operators) < model.config.num_hidden_layers
        ):
            raise ValueError(
                "cuda_graph=True needs mode='recurrent' and a student with no attention layers "
                "(a growing key-value cache cannot be captured)"
            )
        self._graph: Any = None
        self._static: dict[str, Tensor] = {}

    def __enter__(self) -> Decoder:
        for i, decoder in self.decoders.items():
            layer = self.family.layers(self.model)[i]
            mixer = getattr(layer, self.family.attention)
            setattr(layer, self.family.attention, _DecodingMixer(mixer, decoder))
            self._swapped.append((layer, mixer))
        return self

    def __exit__(self, *_exc: Any) -> None:
        for layer, mixer in self._swapped:
            setattr(layer, self.family.attention, mixer)
        self._swapped = []

    def state_bytes(self) -> int:
        """Bytes held for the sequence: Hyena decoding states plus the attention layers' key-value
        cache."""
        held = sum(d.state_bytes() for d in self.decoders.values())
        if self.mode == "full" and self.ids is not None:
            held += self.ids.numel() * self.ids.element_size()
        if self.cache is not None:
            for layer in getattr(self.cache, "layers", []):
                for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                    held += t.numel() * t.element_size() if isinstance(t, Tensor) else 0
        return held

    def _forward(self, ids: Tensor, all_logits: bool) -> Tensor:
        kwargs: dict[str, Any] = {} if all_logits else {"logits_to_keep": 1}
        if self.mode == "full":
            return self.model(ids, use_cache=False, **kwargs).logits
        positions = torch.arange(self.position, self.position + ids.shape[1], device=ids.device)
        kwargs["position_ids"] = positions[None].expand(ids.shape[0], -1)
        if (
            len(self.operators) < self.model.config.num_hidden_layers
        ):  # attention layers: key-value cache
            out = self.model(ids, use_cache=True, **{self.cache_name: self.cache}, **kwargs)
            self.cache = out["cache"] if "cache" in out else out.get("past_key_values")
        else:
            out = self.model(ids, use_cache=False, **kwargs)
        self.position += ids.shape[1]
        return out.logits

    def prefill(self, ids: Tensor, all_logits: bool = False) -> Tensor:
        """Start a new sequence with the prompt ids [B, T]; logits of its last position [B, V] (all:
        [B, T, V])."""
        if self.mode != "full" and not self._swapped and self.decoders:
            raise RuntimeError(
                "use the Decoder as a context manager: `with Decoder(model, mode) as decoder: ...`"
            )
        for decoder in self.decoders.values():
            decoder.reset()
        self.position, self.ids, self._graph = 0, ids, None
        has_attention = len(self.operators) < self.model.config.num_hidden_layers
        self.cache = (
            _new_cache(self.model, list(self.operators))
            if self.mode != "full" and has_attention
            else None
        )
        with torch.no_grad():
            logits = self._forward(ids, all_logits)
        return logits if all_logits else logits[:, -1]

    def step(self, tokens: Tensor) -> Tensor:
        """Feed the next tokens [B, 1] (or [B]); logits of the position after them, [B, V]."""
        tokens = tokens.view(-1, 1)
        with torch.no_grad():
            if self.cuda_graph and tokens.is_cuda:
                return self._graph_step(tokens)
            if self.mode == "full":
                self.ids = torch.cat([self.ids, tokens], dim=1)
                return self._forward(self.ids, False)[:, -1]
            return self._forward(tokens, False)[:, -1]

    def _static_forward(self) -> Tensor:
        """One step from the static buffers (a 4-D mask skips the mask building, which would
        synchronise)."""
        st = self._static
        out = self.model(
            st["tokens"],
            use_cache=False,
            position_ids=st["positions"],
            attention_mask=st["mask"],
            logits_to_keep=1,
        )
        return out.logits[:, -1]

    def _graph_step(self, tokens: Tensor) -> Tensor:
        """A decoding step replayed from a CUDA graph (captured at the first step after a
        prefill)."""
        if self._graph is None:
            batch, device = tokens.shape[0], tokens.device
            self._static = {
                "tokens": tokens.clone(),
                "positions": torch.full((batch, 1), self.position, dtype=torch.long, device=device),
                "mask": torch.ones(batch, 1, 1, 1, dtype=torch.bool, device=device),
            }
            saved = [d.snapshot() for d in self.decoders.values()]

            def restore() -> None:  # the warm-up steps moved the states on
                for decoder, state in zip(self.decoders.values(), saved, strict=True):
                    decoder.restore(state)

            self._graph, self._static["logits"] = record(
                self._static_forward, device, warmup=2, before_recording=restore
            )
        self._static["tokens"].copy_(tokens)
        self._static["positions"].fill_(self.position)
        self._graph.replay()
        self.position += 1
        return self._static["logits"].clone()


# ------------------------------------------------------------------------------------ quality
def perplexity(
    model: nn.Module,
    windows: Tensor,
    fits: dict[int, ModalFilter] | None = None,
    batch_size: int = 8,
) -> float:
    """Perplexity over windows [N, T] of the convolutional student, or with `fits` of its recurrent
    version.

    The recurrent version's logits come from `RecurrentDecoder`'s prefill, i.e. the convolution with
    the fitted filters, which is what token-by-token recurrent decoding computes (the tests check
    that they agree).
    Taught in chapter 10.
    """
    with Decoder(model, "recurrent" if fits else "full", fits=fits) as decoder:
        prefill = partial(decoder.prefill, all_logits=True)
        return math.exp(validation_loss(model, windows, batch_size, logits=prefill))


# ------------------------------------------------------------------------------------ generate
@dataclass
class Generation:
    """What `generate` produced: the new tokens [B, N] and how long it took."""

    tokens: Tensor
    prefill_s: float
    decode_s: float

    @property
    def tokens_per_s(self) -> float:
        """New tokens per second of decoding (the prompt's prefill excluded), summed over the
        batch."""
        steps = self.tokens.shape[1] - 1  # the first new token comes from the prefill
        return (
            self.tokens.shape[0] * steps / self.decode_s
            if steps > 0 and self.decode_s > 0
            else float("nan")
        )


def _pick(
    logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> Tensor:
    """Greedy (temperature 0) or sampled next tokens [B, 1] from logits [B, V]."""
    if temperature <= 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k:
        threshold = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that a clock read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generate(
    model: nn.Module,
    input_ids: Tensor,
    max_new_tokens: int = 32,
    mode: str = "recurrent",
    order: int = 16,
    fits: dict[int, ModalFilter] | None = None,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> Generation:
    """Continue input_ids [B, T] by max_new_tokens tokens, decoding Hyena layers in `mode`
    (full|cached|recurrent).

    Greedy unless temperature > 0 (then sampled, optionally from the top_k, with `seed`). A
    recurrent decode uses `fits` (from `fit_student`) when given, else the modal fit stored with
    the student when `order` is its order (16), else fits order `order` first (see `Decoder`).
    Taught in chapter 10.
    """
    if input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise ValueError(
            f"input_ids must have shape [batch, length >= 1], got {tuple(input_ids.shape)}"
        )
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}: ask for at least one new token")
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", None
    )
    total = input_ids.shape[1] + max_new_tokens
    if limit and total > limit and getattr(model.config, "model_type", "").endswith("gpt2"):
        raise ValueError(
            f"prompt plus new tokens ({total}) exceed this GPT-2's {limit} learned positions; "
            f"ask for fewer new tokens or a shorter prompt"
        )
    generator = None if seed is None else torch.Generator(input_ids.device).manual_seed(seed)
    device = input_ids.device
    new = []
    with Decoder(model, mode, fits=fits, order=order, capacity=total) as decoder:
        synchronize(device)
        start = time.perf_counter()
        logits = decoder.prefill(input_ids)
        new.append(_pick(logits, temperature, top_k, generator))
        synchronize(device)
        prefill_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(max_new_tokens - 1):
            logits = decoder.step(new[-1])
            new.append(_pick(logits, temperature, top_k, generator))
        synchronize(device)
        decode_s = time.perf_counter() - start
    return Generation(torch.cat(new, dim=1), prefill_s, decode_s)
