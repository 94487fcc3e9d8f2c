"""Hyena students as Hugging Face models: GPT-2, GPT-NeoX (Pythia) and Llama (SmolLM2) with Hyena
mixers.

A student is its teacher's architecture in which the layers listed in `config.hyena_layers` hold a
`HyenaMixer` where the teacher has attention. Each family has a config class and a causal-LM class,
registered with `AutoConfig` and `AutoModelForCausalLM` when this module is imported (as
`import hyena_lite` does), so `AutoModelForCausalLM.from_pretrained(folder)` loads a saved student.
`hyena_lite.models.convert` builds a student from a teacher.

Padding: right padding needs nothing (every layer is causal, so a token never sees the pads after
it); left padding is turned into right padding by rolling each row, and the outputs are rolled back;
a mask with holes is refused. With `use_cache=True` (what `generate()` uses) each Hyena layer
decodes on its recurrent state kept in the model's `Cache` (`hyena_lite.hf_cache`), O(1) per new
token, and attention layers keep their key-value cache; a plain forward keeps no cache
(`use_cache=False`, the config's default, as training needs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from hyena_lite import portable
from hyena_lite.hf_cache import (
    CONV_STATES,
    HYENA_LAYER_TYPE,
    MODAL_FIR,
    MODAL_ORDER,
    HyenaCache,
    ModalFitBuffers,
    cached_forward,
    use_hyena_cache,
)
from hyena_lite.operator import HyenaOperator


# ------------------------------------------------------------------------------------------ configs
@dataclass(kw_only=True)
class HyenaFields:
    """The student's extra config fields: where the Hyena layers are and how they are built.

    hyena_filter_args holds further keyword arguments of `HyenaFilter` (emb_dim, w, decay settings,
    bias).
    """

    hyena_layers: list[int] | None = None  # indices of the layers whose attention is replaced
    hyena_l_max: int | None = (
        None  # longest sequence the filters cover; None: max_position_embeddings
    )
    hyena_order: int = 2
    hyena_filter_order: int = 64
    hyena_short_filter_order: int = 3
    hyena_dropout: float = 0.0
    # the first position through a linear map of its own (seeded with attention's W_o W_v, exact
    # there): see HyenaMixer
    hyena_first_token: bool = False
    hyena_filter_args: dict | None = None
    use_cache: bool = False  # a plain forward keeps no cache; generate() turns it on

    @property
    def layer_types(self) -> list[str]:
        """Each layer's cache type for transformers: a recurrent (linear-attention) state for Hyena
        layers, a key-value cache for attention layers."""
        hyena = set(self.hyena_layers or [])
        return [
            HYENA_LAYER_TYPE if i in hyena else "full_attention"
            for i in range(self.num_hidden_layers)
        ]

    @property
    def number_of_conv_states(self) -> int:
        """How many conv states a Hyena layer keeps in the cache (read by transformers)."""
        return CONV_STATES


@strict
class HyenaGPT2Config(HyenaFields, GPT2Config):
    """GPT-2 with Hyena in the layers `hyena_layers`."""

    model_type = "hyena_gpt2"


@strict
class HyenaGPTNeoXConfig(HyenaFields, GPTNeoXConfig):
    """GPT-NeoX (Pythia) with Hyena in the layers `hyena_layers`."""

    model_type = "hyena_gpt_neox"


@strict
class HyenaLlamaConfig(HyenaFields, LlamaConfig):
    """Llama (SmolLM2) with Hyena in the layers `hyena_layers`."""

    model_type = "hyena_llama"


def hyena_l_max(config: Any) -> int:
    """The filter length of a student config: hyena_l_max, else the model's
    max_position_embeddings. Taught in chapter 10."""
    return int(config.hyena_l_max or config.max_position_embeddings)


def check_hyena_config(config: Any) -> None:
    """Raise ValueError naming the problem when hyena_layers is not a list of distinct layer
    indices."""
    layers, n = config.hyena_layers or [], config.num_hidden_layers
    bad = [i for i in layers if not isinstance(i, int) or not 0 <= i < n]
    if bad or len(set(layers)) != len(layers):
        raise ValueError(
            f"hyena_layers={layers} must list distinct layer indices in 0..{n - 1} "
            f"(this model has {n} layers); bad or repeated: {bad or 'repeated entries'}"
        )


# -------------------------------------------------------------------------------------------- mixer
class HyenaMixer(nn.Module):
    """A Hyena operator in the place of a decoder layer's attention: it takes the attention's call
    (normalised hidden states [B, L, D] first, positionally or as `hidden_states=`; the rest
    ignored) and returns what the layer unpacks, (output [B, L, D], None). Given a cache, it
    decodes on its recurrent state (`hyena_lite.hf_cache`) with the modal fit kept in
    `modal_fit`.

    With config.hyena_first_token, a sequence's first position takes `first_token`, a linear map
    of that position alone: there softmax attention sees one key, so its output is exactly
    W_o W_v x_0, which the operator's gated product cannot represent. Llama-style teachers build
    their attention sink, a massive activation at the first token, from it (chapter 12). The map
    is fixed (FirstToken), not trained."""

    def __init__(self, config: Any, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.operator = HyenaOperator(
            config.hidden_size,
            hyena_l_max(config),
            order=config.hyena_order,
            filter_order=config.hyena_filter_order,
            short_filter_order=config.hyena_short_filter_order,
            dropout=config.hyena_dropout,
            **(config.hyena_filter_args or {}),
        )
        self.modal_order = MODAL_ORDER
        self.pad_mask: torch.Tensor | None = None  # [B, L] of a cached prefill, 0 at left pads
        self.modal_fit = ModalFitBuffers(
            config.hyena_order * config.hidden_size, MODAL_ORDER, MODAL_FIR
        )
        width = config.hidden_size
        self.first_token = FirstToken(width) if config.hyena_first_token else None

    def forward(
        self, hidden_states: torch.Tensor, *_args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, None]:
        """Mix positions of hidden_states with the Hyena operator (on the recurrent state in a
        given cache); refuse overlong inputs."""
        names = ("cache", "past_key_values", "layer_past")
        cache = next((kwargs[k] for k in names if kwargs.get(k) is not None), None)
        if cache is not None:
            return cached_forward(self, hidden_states, cache), None
        length, l_max = hidden_states.shape[1], self.operator.l_max
        if length > l_max:
            raise ValueError(
                f"sequence length {length} exceeds the filter length {l_max} of this student's "
                f"Hyena layers; "
                f"convert the teacher with a larger one: hyena_lite.convert(teacher, "
                f"l_max={length}) or more"
            )
        return self.with_first_token(hidden_states, self.operator(hidden_states)), None

    def with_first_token(
        self, hidden: torch.Tensor, out: torch.Tensor, pad_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`out` with each row's first position (index 0, or the first after its left pads in a
        [B, L] `pad_mask`) replaced by `first_token` of that position's input; `out` itself
        without a first-token path."""
        if self.first_token is None:
            return out
        first = None if pad_mask is None else _left_pad_shifts(pad_mask)
        if first is None:
            head = self.first_token(hidden[:, :1]).to(out.dtype)
            return torch.cat([head, out[:, 1:]], dim=1)
        rows = torch.arange(len(out), device=out.device)
        out = out.clone()
        out[rows, first] = self.first_token(hidden[rows, first]).to(out.dtype)
        return out


class FirstToken(nn.Module):
    """A fixed linear map x -> W x + b whose weight and bias are buffers, saved with the model but
    never trained: seeded exact from attention (hyena_lite.models.init_first_token), its loss
    gradient is rounding noise, which Adam would turn into steps of the learning rate's size."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(width, width))
        self.register_buffer("bias", torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


# ------------------------------------------------------------------------------------------ padding
def _left_pad_shifts(mask: torch.Tensor) -> torch.Tensor | None:
    """Per-row number of leading pads of a [B, L] 0/1 mask; None when no row is left-padded.

    Raises ValueError when a row is neither left- nor right-padded (a hole in the middle)."""
    valid = mask.bool()
    length = valid.shape[1]
    lead = (~valid).long().cumprod(dim=1).sum(dim=1)
    count = valid.long().sum(dim=1)
    pos = torch.arange(length, device=mask.device)[None, :]
    left = (valid == (pos >= lead[:, None])).all(dim=1)
    right = (valid == (pos < count[:, None])).all(dim=1)
    if not bool((left | right).all()):
        rows = torch.nonzero(~(left | right)).flatten().tolist()
        raise ValueError(
            f"attention_mask rows {rows} have padding between tokens; a Hyena student accepts "
            f"left or right padding only (pad at one end of each sequence)"
        )
    shifts = torch.where(right, torch.zeros_like(lead), lead) % length
    return shifts if bool(shifts.any()) else None


def _keeps_cache(config: Any, kwargs: dict[str, Any]) -> bool:
    """Whether a forward call with these keyword arguments keeps (or is given) a cache."""
    given = kwargs.get("cache", kwargs.get("past_key_values"))
    return given is not None or bool(kwargs.get("use_cache", config.use_cache))


def _roll_rows(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Row b of x [B, L, ...] rotated left by shifts[b] (negative shifts rotate right)."""
    length = x.shape[1]
    index = (torch.arange(length, device=x.device)[None, :] + shifts[:, None].to(x.device)) % length
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return x.gather(1, index)


# ------------------------------------------------------------------------------------------- models
class HyenaStudentMixin:
    """What every student class adds to its teacher's class: Hyena mixers in the chosen layers,
    padding."""

    # checkpoints from before the modal fit was kept load without it (it is fitted on first use)
    _keys_to_ignore_on_load_missing = [r"\.modal_fit\."]

    def __init__(self, config: Any) -> None:
        check_hyena_config(config)
        super().__init__(config)
        self.loss_type = (
            "ForCausalLM"  # GPT2LMHeadModel's name does not tell transformers which loss it is
        )
        family = FAMILIES_BY_STUDENT[config.model_type]
        for i in config.hyena_layers or []:
            setattr(family.layers(self)[i], family.attention, HyenaMixer(config, i))
        if self.generation_config is not None:  # generate() decodes on the cache by default
            self.generation_config.use_cache = True

    def save_pretrained(
        self,
        save_directory: str | Path,
        *args: Any,
        card: dict[str, Any] | None = None,
        run_log: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        """transformers' save_pretrained, made portable: the config's auto_map points to a module
        written beside the weights (it imports hyena_lite), and a model card README.md tells the
        teacher, recipe, tokens and results from `card` or a run's log.json (`run_log`); the modal
        fit that generate() decodes with is saved with the weights when it has been made."""
        fields = portable.card_from_run_log(run_log) if run_log is not None else {}
        readme = portable.model_card(self, {**fields, **(card or {})})  # checked before writing
        previous = dict(self.config.__dict__)
        self.config.auto_map = portable.auto_map(self)  # for the saved config only
        self._auto_class = self.config._auto_class = None  # never copy students.py instead
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            for name in ("auto_map", "_auto_class"):
                self.config.__dict__.pop(name, None)
                if name in previous:
                    self.config.__dict__[name] = previous[name]
            del self._auto_class
        portable.write_remote_module(Path(save_directory), self)
        (Path(save_directory) / "README.md").write_text(readme)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> Any:
        """The teacher class's forward; left-padded rows are rolled to right padding and back around
        it."""
        given = input_ids if input_ids is not None else inputs_embeds
        positions = getattr(self.config, "n_positions", None)  # a learned table (GPT-2) caps length
        if given is not None and given.dim() >= 2 and positions and given.shape[1] > positions:
            raise ValueError(
                f"an input of {given.shape[1]} tokens exceeds the {positions} learned positions of "
                f"this {type(self).__name__}; give at most {positions} tokens"
            )
        shifts = None
        cached = bool(self.config.hyena_layers) and _keeps_cache(self.config, kwargs)
        step = cached and given is not None and given.shape[1] == 1  # its prefill was checked
        if self.config.hyena_layers and attention_mask is not None and attention_mask.dim() == 2:
            shifts = None if step else _left_pad_shifts(attention_mask)
        if cached:  # left pads are not rolled away: the prefill leaves them out of the state
            pads = attention_mask if shifts is not None else None
            if len(self.config.hyena_layers) == self.config.num_hidden_layers:
                # no layer attends: a placeholder 4-D mask skips the mask building, which asks
                # the cache for attention layers
                attention_mask = torch.ones(
                    given.shape[0], 1, 1, 1, dtype=torch.bool, device=given.device
                )
            return self._forward_cached(
                pads,
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                labels=labels,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )
        if shifts is None:
            return super().forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                labels=labels,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )
        return self._forward_left_padded(
            shifts,
            input_ids,
            attention_mask,
            position_ids,
            inputs_embeds,
            labels,
            logits_to_keep,
            **kwargs,
        )

    def _prepare_cache_for_generation(
        self, generation_config: Any, model_kwargs: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        """transformers' cache for generate(), its default DynamicCache made a HyenaCache (whose
        Hyena layers count the tokens they have seen)."""
        made = super()._prepare_cache_for_generation(
            generation_config, model_kwargs, *args, **kwargs
        )
        use_hyena_cache(model_kwargs, self.config)
        return made

    def _forward_cached(self, pads: torch.Tensor | None, **inputs: Any) -> Any:
        """The teacher class's forward on a cache (a new HyenaCache when none is given), each Hyena
        mixer told the left pads of its prefill (a [B, L] mask, or None)."""
        if all(inputs.get(name) is None for name in ("cache", "past_key_values")):
            inputs[kv_cache_argument(self)] = HyenaCache(self.config)
        mixers = [m for m in self.modules() if isinstance(m, HyenaMixer)]
        for mixer in mixers:
            mixer.pad_mask = pads
        try:
            return super().forward(**inputs)
        finally:
            for mixer in mixers:
                mixer.pad_mask = None

    def _forward_left_padded(
        self,
        shifts,
        input_ids,
        attention_mask,
        position_ids,
        inputs_embeds,
        labels,
        logits_to_keep,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Any:
        """Forward of a left-padded batch: roll the inputs to right padding, run, roll the outputs
        back."""
        batch = attention_mask.shape[0]
        if position_ids is not None:
            position_ids = position_ids.expand(batch, -1)
        rolled = {
            name: None if t is None else _roll_rows(t, shifts)
            for name, t in dict(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                token_type_ids=kwargs.pop("token_type_ids", None),
            ).items()
        }
        rolled = {k: v for k, v in rolled.items() if v is not None}
        out = super().forward(**rolled, **kwargs, return_dict=True)
        logits = _roll_rows(out.logits, -shifts)
        loss = (
            None
            if labels is None
            else self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size)
        )
        if isinstance(logits_to_keep, int):
            logits = logits[:, -logits_to_keep:] if logits_to_keep else logits
        else:
            logits = logits[:, logits_to_keep]
        hidden = (
            None
            if out.hidden_states is None
            else tuple(_roll_rows(h, -shifts) for h in out.hidden_states)
        )
        result = CausalLMOutputWithPast(
            loss=loss, logits=logits, hidden_states=hidden, attentions=out.attentions
        )
        return result if return_dict is not False else result.to_tuple()


class HyenaGPT2LMHeadModel(HyenaStudentMixin, GPT2LMHeadModel):
    """GPT-2 causal LM whose layers `config.hyena_layers` mix with Hyena."""

    config_class = HyenaGPT2Config
    config: HyenaGPT2Config


class HyenaGPTNeoXForCausalLM(HyenaStudentMixin, GPTNeoXForCausalLM):
    """GPT-NeoX (Pythia) causal LM whose layers `config.hyena_layers` mix with Hyena."""

    config_class = HyenaGPTNeoXConfig
    config: HyenaGPTNeoXConfig


class HyenaLlamaForCausalLM(HyenaStudentMixin, LlamaForCausalLM):
    """Llama (SmolLM2) causal LM whose layers `config.hyena_layers` mix with Hyena."""

    config_class = HyenaLlamaConfig
    config: HyenaLlamaConfig


# ----------------------------------------------------------------------------------------- families
@dataclass(frozen=True)
class Family:
    """One supported architecture: its teacher and student classes, and where its layers and mixers
    live."""

    name: str
    teacher_type: str  # config.model_type of the teacher
    teacher_class: type[PreTrainedModel]
    config_class: type
    student_class: type[PreTrainedModel]
    layers: Callable[[nn.Module], nn.ModuleList]  # the decoder layers of a causal LM
    attention: str  # attribute of a layer that holds its mixer (attention or HyenaMixer)
    final_norm: Callable[[nn.Module], nn.Module]  # the norm between the last layer and the head


FAMILIES: dict[str, Family] = {
    "gpt2": Family(
        "GPT-2",
        "gpt2",
        GPT2LMHeadModel,
        HyenaGPT2Config,
        HyenaGPT2LMHeadModel,
        lambda m: m.transformer.h,
        "attn",
        lambda m: m.transformer.ln_f,
    ),
    "gpt_neox": Family(
        "GPT-NeoX (Pythia)",
        "gpt_neox",
        GPTNeoXForCausalLM,
        HyenaGPTNeoXConfig,
        HyenaGPTNeoXForCausalLM,
        lambda m: m.gpt_neox.layers,
        "attention",
        lambda m: m.gpt_neox.final_layer_norm,
    ),
    "llama": Family(
        "Llama (SmolLM2)",
        "llama",
        LlamaForCausalLM,
        HyenaLlamaConfig,
        HyenaLlamaForCausalLM,
        lambda m: m.model.layers,
        "self_attn",
        lambda m: m.model.norm,
    ),
}
FAMILIES_BY_STUDENT: dict[str, Family] = {f.config_class.model_type: f for f in FAMILIES.values()}


def family_of(model: nn.Module) -> Family:
    """The family of a teacher or student causal LM; ValueError naming the supported ones
    otherwise."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    family = FAMILIES.get(model_type) or FAMILIES_BY_STUDENT.get(model_type)
    if family is None or not isinstance(model, (family.teacher_class, family.student_class)):
        supported = ", ".join(f"{f.name} ({f.teacher_class.__name__})" for f in FAMILIES.values())
        raise ValueError(
            f"{type(model).__name__} (model_type {model_type!r}) is not supported; hyena_lite "
            f"converts these causal LMs: {supported}"
        )
    return family


def layer_mixers(model: nn.Module) -> list[nn.Module]:
    """Each layer's token mixer: the module that maps the layer's normalised hidden states to its
    mixer output.

    That is the attention module of a teacher, or of a student's attention layers, and the
    `HyenaMixer` of a student's Hyena layers. A forward hook registered with `with_kwargs=True` sees
    the input as `args[0]` (GPT-2, GPT-NeoX) or `kwargs["hidden_states"]` (Llama), and the output as
    a tuple whose first element is the mixer output [B, L, D], before the residual addition.
    Taught in chapter 5.
    """
    family = family_of(model)
    return [getattr(layer, family.attention) for layer in family.layers(model)]


def _register() -> None:
    """Make AutoConfig and AutoModelForCausalLM know the student classes (idempotent)."""
    for family in FAMILIES.values():
        model_type = family.config_class.model_type
        AutoConfig.register(model_type, family.config_class, exist_ok=True)
        AutoModelForCausalLM.register(family.config_class, family.student_class, exist_ok=True)


_register()


def kv_cache_argument(model: nn.Module) -> str:
    """The name of the key-value cache argument of this transformers version ("cache" or
    "past_key_values").

    Read from the base model's forward: the causal-LM class takes **kwargs and would accept either
    name silently.
    """
    inner = getattr(model, model.base_model_prefix, model)
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"
