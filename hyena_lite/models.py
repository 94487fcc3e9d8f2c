"""Hyena students from teachers: `convert` a GPT-2, GPT-NeoX or Llama causal LM, and count what
changed.

The student classes live in hyena_lite.students (re-exported here); importing either module
registers them with AutoConfig and AutoModelForCausalLM.

`convert` copies everything but the replaced attention (embeddings, norms, MLPs, head) and, with
init="teacher", starts each Hyena operator's projections from the attention it replaces, by the
linear-attention analogy y = q * (h * (k * v)):

    x^1 (first gate)  <- key        x^N (last gate) <- query        v <- value        out_proj <- o

Middle gates of an order N > 2 start as constant ones (weight 0, bias 1), so the student starts as
the order-2 analogy with extra filters. Order 1 has one gate, the query; the key has no place.
Grouped-query keys and values are expanded to one copy per query head. The long and short filters
start fresh (the operator's own initialisation); so does every bias the teacher lacks (at zero).
"""

from __future__ import annotations

import inspect
from typing import Any

import pandas as pd
import torch
from torch import nn
from transformers import PreTrainedModel

from hyena_lite.operator import HyenaFilter, HyenaOperator
from hyena_lite.students import (  # noqa: F401  re-exported: the student classes are part of this module's API
    FAMILIES,
    Family,
    HyenaGPT2Config,
    HyenaGPT2LMHeadModel,
    HyenaGPTNeoXConfig,
    HyenaGPTNeoXForCausalLM,
    HyenaLlamaConfig,
    HyenaLlamaForCausalLM,
    HyenaMixer,
    check_hyena_config,
    family_of,
    hyena_l_max,
    layer_mixers,
)

INITS = ("teacher", "fresh", "random")
# HyenaFilter arguments a student gets unless convert() is given others: 16 positional bands, as
# the Hyena paper's language models use. HyenaFilter's own default, one band at a frequency near
# zero, aligned worse at every scale measured (chapter 12: single mixers, the cpu chain's student
# and SmolLM2's hybrid). Written into each new student's config, so a student saved before this
# default changed still loads with its own single band.
STUDENT_FILTER_DEFAULTS: dict[str, Any] = {"emb_dim": 33}
# convert()'s keyword arguments that are HyenaOperator arguments (and first_token, the mixer's
# first-token path), and the config fields that hold them
_OPERATOR_FIELDS = {
    "first_token": "hyena_first_token",
    "l_max": "hyena_l_max",
    "order": "hyena_order",
    "filter_order": "hyena_filter_order",
    "short_filter_order": "hyena_short_filter_order",
    "dropout": "hyena_dropout",
}
# config fields copied from no teacher: what transformers writes itself
_NOT_COPIED = (
    "model_type",
    "transformers_version",
    "architectures",
    "_name_or_path",
    "auto_map",
    "quantization_config",
)


def student_config(
    teacher_config: Any, family: Family, hyena_layers: list[int], **hyena_kwargs: Any
) -> Any:
    """The student's config: the teacher's, plus the Hyena fields from convert()'s keyword
    arguments (filter arguments over `STUDENT_FILTER_DEFAULTS`)."""
    filter_names = set(inspect.signature(HyenaFilter.__init__).parameters) - {
        "self",
        "channels",
        "l_max",
    }
    unknown = set(hyena_kwargs) - set(_OPERATOR_FIELDS) - filter_names
    if unknown:
        raise TypeError(
            f"unknown Hyena argument(s) {sorted(unknown)}; HyenaOperator takes "
            f"{sorted(_OPERATOR_FIELDS)}, and HyenaFilter {sorted(filter_names)}"
        )
    fields = {_OPERATOR_FIELDS[k]: v for k, v in hyena_kwargs.items() if k in _OPERATOR_FIELDS}
    filter_args = {  # filter_order is both: the operator passes it on to its filter
        **STUDENT_FILTER_DEFAULTS,
        **{
            k: v for k, v in hyena_kwargs.items() if k in filter_names and k not in _OPERATOR_FIELDS
        },
    }
    values = {k: v for k, v in teacher_config.to_dict().items() if k not in _NOT_COPIED}
    values["use_cache"] = False
    config = family.config_class(
        **values, hyena_layers=list(hyena_layers), hyena_filter_args=filter_args, **fields
    )
    config._attn_implementation = teacher_config._attn_implementation
    return config


def attention_projections(
    attention: nn.Module, family: Family
) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """The q, k, v, o projections of a teacher attention as nn.Linear (weight [out, in], bias or
    None), float32.

    GPT-2 keeps them in Conv1D layers (weight [in, out], q|k|v side by side); GPT-NeoX interleaves
    q, k, v per head; Llama's grouped-query k and v are repeated for the query heads that share
    them.
    Taught in chapter 5.
    """

    def linear(
        weight: torch.Tensor, bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return weight.detach().float(), None if bias is None else bias.detach().float()

    if family.teacher_type == "gpt2":
        w, b = attention.c_attn.weight.t(), attention.c_attn.bias
        d = w.shape[1]
        (qw, kw, vw), (qb, kb, vb) = w.split(d, dim=0), b.split(d)
        return {
            "q": linear(qw, qb),
            "k": linear(kw, kb),
            "v": linear(vw, vb),
            "o": linear(attention.c_proj.weight.t(), attention.c_proj.bias),
        }
    if family.teacher_type == "gpt_neox":
        qkv = attention.query_key_value
        heads = attention.config.num_attention_heads
        w = qkv.weight.view(heads, 3, -1, qkv.in_features)
        b = None if qkv.bias is None else qkv.bias.view(heads, 3, -1)
        parts = {
            name: linear(
                w[:, j].reshape(-1, qkv.in_features), None if b is None else b[:, j].reshape(-1)
            )
            for j, name in enumerate("qkv")
        }
        return {**parts, "o": linear(attention.dense.weight, attention.dense.bias)}
    if family.teacher_type == "llama":
        groups = attention.num_key_value_groups

        def expand(proj: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
            w = proj.weight.view(-1, attention.head_dim, proj.in_features).repeat_interleave(
                groups, dim=0
            )
            b = (
                None
                if proj.bias is None
                else proj.bias.view(-1, attention.head_dim).repeat_interleave(groups, 0)
            )
            return linear(w.reshape(-1, proj.in_features), None if b is None else b.reshape(-1))

        return {
            "q": linear(attention.q_proj.weight, attention.q_proj.bias),
            "k": expand(attention.k_proj),
            "v": expand(attention.v_proj),
            "o": linear(attention.o_proj.weight, attention.o_proj.bias),
        }
    raise ValueError(f"no projection map for family {family.name}")


def init_from_attention(
    operator: HyenaOperator, projections: dict[str, tuple[torch.Tensor, torch.Tensor | None]]
) -> None:
    """Set the operator's in_proj rows [x^1..x^N, v] to [k, 1.., q, v] and its out_proj to o (see
    the module doc)."""
    d, order = operator.d_model, operator.order
    if projections["q"][0].shape != (d, d):
        raise ValueError(
            f"the attention projects width {d} to {projections['q'][0].shape[0]} channels, so it "
            f"cannot seed a Hyena operator of width {d}; convert with init='random'"
        )

    value = projections["v"][0]  # new rows take its device and dtype (the teacher may be on a GPU)

    def bias(name: str) -> torch.Tensor:
        b = projections[name][1]
        return value.new_zeros(d) if b is None else b

    gates = ["q"] if order == 1 else ["k"] + [""] * (order - 2) + ["q"]  # "": a constant-one gate
    weights = [projections[g][0] if g else value.new_zeros(d, d) for g in gates] + [value]
    biases = [bias(g) if g else value.new_ones(d) for g in gates] + [bias("v")]
    with torch.no_grad():
        operator.in_proj.weight.copy_(torch.cat(weights))
        operator.in_proj.bias.copy_(torch.cat(biases))
        operator.out_proj.weight.copy_(projections["o"][0])
        operator.out_proj.bias.copy_(bias("o"))


def convert(
    teacher: PreTrainedModel,
    hyena_layers: list[int] | None = None,
    init: str = "teacher",
    **hyena_kwargs: Any,
) -> PreTrainedModel:
    """A Hyena student of `teacher`: the layers `hyena_layers` (default all) get a Hyena mixer for
    attention.

    init="teacher": everything but the replaced attention is copied, and each Hyena operator's
    in/out projections start from that attention's q, k, v, o (key -> x^1, query -> x^N, value -> v,
    o -> out_proj; see the module doc); the filters start fresh. init="fresh": the teacher's weights
    everywhere but in the Hyena operators, which keep their own initialisation. init="random": the
    same architecture, all untrained. `hyena_kwargs` are HyenaOperator arguments (l_max, order,
    filter_order, short_filter_order, dropout), first_token (HyenaMixer's first-token path, seeded
    exact from attention with init="teacher") and HyenaFilter ones; l_max defaults to the teacher's
    max_position_embeddings and the filters to `STUDENT_FILTER_DEFAULTS` (16 positional bands).
    Filters as long as the training context (l_max = its length) align better still, but such a
    student reads no longer sequences (chapter 12). The student has the teacher's dtype and device
    and is in eval mode unless the teacher is training.
    Taught in chapter 5.
    """
    family = family_of(teacher)
    if isinstance(teacher, family.student_class):
        raise ValueError(
            f"{type(teacher).__name__} is already a Hyena student; convert its teacher instead"
        )
    if init not in INITS:
        raise ValueError(
            f"init={init!r}; choose 'teacher' (copy the teacher's weights, seed Hyena from "
            f"attention), "
            f"'fresh' (copy them, Hyena as initialised) or 'random' (nothing copied)"
        )
    layers = (
        list(range(teacher.config.num_hidden_layers))
        if hyena_layers is None
        else list(hyena_layers)
    )
    config = student_config(teacher.config, family, layers, **hyena_kwargs)
    check_hyena_config(config)
    positions = getattr(teacher.config, "n_positions", None)  # a learned table (GPT-2) caps length
    if positions and hyena_l_max(config) > positions:
        raise ValueError(
            f"l_max={hyena_l_max(config)} exceeds the {positions} learned positions of this "
            f"{type(teacher).__name__}: the student could never see that long an input; "
            f"give l_max <= {positions}"
        )
    student = family.student_class(config)
    if init != "random":
        _copy_from_teacher(student, teacher, family, layers if init == "teacher" else [])
    param = next(teacher.parameters())
    student.to(device=param.device, dtype=param.dtype)
    for (
        name,
        buffer,
    ) in teacher.named_buffers():  # e.g. RoPE frequencies, which stay float32 in a bf16 model
        module, _, leaf = name.rpartition(".")
        student.get_submodule(module)._buffers[leaf] = buffer.clone()
    return student.train(teacher.training)


def _copy_from_teacher(
    student: PreTrainedModel, teacher: PreTrainedModel, family: Family, layers: list[int]
) -> None:
    """Copy every teacher weight the student shares by name, then seed the Hyena projections of
    `layers` from attention."""
    target = student.state_dict()
    shared = {k: v for k, v in teacher.state_dict().items() if k in target}
    student.load_state_dict(shared, strict=False)
    hyena_keys = {
        k
        for k in target
        if any(part in k for part in (".operator.", ".modal_fit.", ".first_token."))
    }
    missing = set(target) - set(shared) - hyena_keys
    if missing:
        raise RuntimeError(f"student weights with no teacher counterpart: {sorted(missing)[:5]}")
    teacher_mixers, student_mixers = layer_mixers(teacher), layer_mixers(student)
    for i in layers:
        projections = attention_projections(teacher_mixers[i], family)
        init_from_attention(student_mixers[i].operator, projections)
        if student_mixers[i].first_token is not None:
            init_first_token(student_mixers[i].first_token, projections)


def init_first_token(
    linear: nn.Module, projections: dict[str, tuple[torch.Tensor, torch.Tensor | None]]
) -> None:
    """Set `linear` (its weight and bias) to attention's output at a sequence's first position,
    where it attends to that position alone: x -> W_o (W_v x + b_v) + b_o."""
    (v, v_bias), (o, o_bias) = projections["v"], projections["o"]
    with torch.no_grad():
        linear.weight.copy_(o @ v)
        bias = torch.zeros(o.shape[0], device=o.device) if o_bias is None else o_bias.clone()
        if v_bias is not None:
            bias += o @ v_bias
        linear.bias.copy_(bias)


def _parts(model: PreTrainedModel) -> dict[str, str]:
    """The table row of each parameter name: embeddings, layer i mixer, layer i MLP + norms, final
    norm, head."""
    family = family_of(model)
    layers = family.layers(model)
    prefix = next(n for n, m in model.named_modules() if m is layers) + "."
    modules = dict(model.named_modules())
    parts = {}
    for name, _ in model.named_parameters():
        if name.startswith(prefix):
            index, rest = name[len(prefix) :].split(".", 1)
            kind = "mixer" if rest.startswith(family.attention + ".") else "MLP + norms"
            parts[name] = f"layer {int(index):>2} {kind}"
        elif isinstance(modules[name.rsplit(".", 1)[0]], nn.Embedding):
            parts[name] = "embeddings"
        else:
            parts[name] = "head" if name.startswith("lm_head") else "final norm"
    return parts


def _row_order(part: str) -> tuple[int, int]:
    """Rows in model order: embeddings, then each layer's mixer and MLP + norms, then final norm and
    head."""
    fixed = {"embeddings": (-1, 0), "final norm": (1 << 30, 0), "head": (1 << 30, 1)}
    return fixed.get(part) or (int(part.split()[1]), int(part.endswith("MLP + norms")))


def parameter_table(teacher: PreTrainedModel, student: PreTrainedModel) -> pd.DataFrame:
    """Parameters per part (embeddings, each layer's mixer and MLP + norms, final norm, head) and in
    total.

    Columns: teacher, student, new (student parameters with no teacher parameter of that name and
    shape:
    the Hyena operators), and the student's mixer kind. A tied head counts once, under embeddings.
    Taught in chapter 5.
    """
    t_params, s_params = dict(teacher.named_parameters()), dict(student.named_parameters())
    t_parts, s_parts = _parts(teacher), _parts(student)
    kinds = {
        f"layer {i:>2} mixer": "Hyena" if isinstance(m, HyenaMixer) else "attention"
        for i, m in enumerate(layer_mixers(student))
    }
    rows = {
        part: {"teacher": 0, "student": 0, "new": 0, "mixer": kinds.get(part, "")}
        for part in dict.fromkeys([*t_parts.values(), *s_parts.values()])
    }
    for name, part in t_parts.items():
        rows[part]["teacher"] += t_params[name].numel()
    for name, part in s_parts.items():
        p = s_params[name]
        rows[part]["student"] += p.numel()
        if name not in t_params or t_params[name].shape != p.shape:
            rows[part]["new"] += p.numel()
    ordered = {part: rows[part] for part in sorted(rows, key=_row_order)}
    table = pd.DataFrame.from_dict(ordered, orient="index").rename_axis("part")
    table.loc["total"] = [table.teacher.sum(), table.student.sum(), table.new.sum(), ""]
    return table
