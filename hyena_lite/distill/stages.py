"""Distillation objectives and stages: what a Hyena student learns from its transformer teacher.

Stages: `progressive` (the paper: layer by layer from the bottom, each Hyena mixer learns to
reproduce the teacher's attention output from the teacher's input to that layer; chapter 6),
`transfer` (the same alignment for every layer at once, so that each sees the whole budget;
chapter 6), `kd` (end-to-end logit distillation, optionally with cross-entropy and hidden-state
alignment; chapter 7), and `ce` (cross-entropy only: from a teacher-initialised student, or from a
random one, the "scratch" baseline; chapter 7). The losses are in `hyena_lite.losses`, the recipes
that chain stages in `hyena_lite.distill.recipes`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import torch
from torch import nn

from hyena_lite.capture import capture_mixer, capture_mixers, first_output, run_until_stop
from hyena_lite.copy_loss import (
    attention_layers,
    final_residual,
    induction_loss,
    induction_targets,
    logit_lens,
    readout_loss,
)
from hyena_lite.losses import (
    kd_loss,
    lm_cross_entropy,
    normalized_mse,
    shift_for_next_token,
    stream_loss,
    validation_loss,
    weighted_sum,
)
from hyena_lite.models import HyenaMixer, layer_mixers
from hyena_lite.recall import eager_attention
from hyena_lite.training import Batch, BatchesFn, TrainConfig, TrainResult, compiled, train


def _ids_and_mask(batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """input_ids and the padding mask (None when nothing is padded) of a tensor or dict batch."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    return batch["input_ids"], batch.get("attention_mask")


# ---------------------------------------------------------------------------------- layer capture


def _teacher_mixer_io(
    teacher: nn.Module, layer: int, ids: torch.Tensor, mask
) -> dict[str, torch.Tensor]:
    with torch.no_grad(), capture_mixer(teacher, layer) as io:
        run_until_stop(lambda: teacher(input_ids=ids, attention_mask=mask))
    return io


def _place(module: nn.Module, like: torch.Tensor) -> nn.Module:
    """Move a frozen helper model (the teacher) to the device of the batch, once."""
    if next(module.parameters()).device != like.device:
        module.to(like.device)
    return module


def freeze(model: nn.Module) -> nn.Module:
    """Evaluation mode and no gradients: how a teacher is used."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ----------------------------------------------------------------------------------- objectives


class MixerOnly(nn.Module):
    """One student mixer as a model of its own, so that the training loop (and DDP) trains just
    it. Taught in chapter 6."""

    def __init__(self, mixer: nn.Module):
        super().__init__()
        self.mixer = mixer

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return first_output(self.mixer(hidden))


def alignment_objective(teacher: nn.Module, layer: int, student: nn.Module | None = None):
    """Loss of a MixerOnly: normalised MSE to the teacher's mixer output of `layer`.

    The mixer's input is the teacher's input to that layer (teacher forcing), or, when `student` is
    given, the student's own input to that layer (its lower layers as trained so far).
    Taught in chapter 6.
    """

    def loss_fn(model: nn.Module, batch: Batch):
        ids, mask = _ids_and_mask(batch)
        target = _teacher_mixer_io(_place(teacher, ids), layer, ids, mask)
        hidden = target["input"]
        if student is not None:
            with torch.no_grad():
                hidden = _teacher_mixer_io(_place(student, ids), layer, ids, mask)["input"]
        loss = normalized_mse(model(hidden), target["output"], mask)
        return loss, {f"nmse_layer{layer}": loss.item()}

    return loss_fn


class MixerSet(nn.Module):
    """Several student mixers as one model, so that the training loop (and DDP) trains them
    together. Taught in chapter 6."""

    def __init__(self, mixers: dict[int, nn.Module]):
        super().__init__()
        self.layers = list(mixers)
        self.mixers = nn.ModuleList(mixers.values())

    def forward(self, inputs: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        return {
            layer: first_output(mixer(inputs[layer]))
            for layer, mixer in zip(self.layers, self.mixers, strict=False)
        }


def transfer_objective(teacher: nn.Module, layers: list[int]):
    """Loss of a MixerSet: the mean over its layers of the normalised MSE to the teacher's mixer
    output, each mixer fed the teacher's input to its layer (one teacher pass serves every
    layer). Taught in chapter 6."""

    def loss_fn(model: nn.Module, batch: Batch):
        ids, mask = _ids_and_mask(batch)
        with torch.no_grad(), capture_mixers(_place(teacher, ids), layers) as io:
            run_until_stop(lambda: teacher(input_ids=ids, attention_mask=mask))
        outputs = model({layer: io[layer]["input"] for layer in layers})
        losses = torch.stack(
            [normalized_mse(outputs[layer], io[layer]["output"], mask) for layer in layers]
        )
        return losses.mean(), {
            f"nmse_layer{layer}": v
            for layer, v in zip(layers, losses.detach().tolist(), strict=False)
        }

    return loss_fn


def hidden_objective(teacher: nn.Module, layer: int):
    """Loss of a whole student: normalised MSE between its hidden state after block `layer` and the
    teacher's."""

    def loss_fn(model: nn.Module, batch: Batch):
        ids, mask = _ids_and_mask(batch)
        with torch.no_grad():
            target = _place(teacher, ids)(
                input_ids=ids, attention_mask=mask, output_hidden_states=True
            )
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        loss = normalized_mse(out.hidden_states[layer + 1], target.hidden_states[layer + 1], mask)
        return loss, {f"hidden_nmse_layer{layer}": loss.item()}

    return loss_fn


def logit_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The KD term (KL(teacher || student) of next-token distributions) and the cross-entropy term
    of a student's logits [B, L, V]: what compiling fuses (their float32 softmaxes over the
    vocabulary, forward and backward, took 11 ms of a 157 ms SmolLM2 KD step run eagerly)."""
    shifted, kept = shift_for_next_token(student_logits, mask)
    target = shift_for_next_token(teacher_logits, mask)[0]
    return kd_loss(shifted, target, temperature, kept), lm_cross_entropy(student_logits, ids, mask)


def kd_objective(
    teacher: nn.Module,
    kd: float = 1.0,
    ce: float = 0.0,
    hidden: float = 0.0,
    temperature: float = 1.0,
    induction: float = 0.0,
    readout: float = 0.0,
    readout_direct: bool = False,
    compile: str = "no",
    stream: float = 0.0,
):
    """Loss of a whole student: kd * KL(teacher || student) + ce * cross-entropy + hidden * mean
    hidden-state NMSE + induction * the copy-aware loss of its attention layers (the student must
    run eager attention) + readout * the read-out loss of their outputs (hyena_lite.copy_loss; with
    readout_direct, of their direct effect on the logits rather than the logit lens alone)
    + stream * the residual stream's per-token error (losses.stream_loss: against spurious massive
    tokens).
    `compile`: the teacher's forward and the logits' terms under torch.compile
    (training.COMPILE_MODES)."""
    weights = {
        "kd": kd,
        "ce": ce,
        "hidden": hidden,
        "induction": induction,
        "readout": readout,
        "stream": stream,
    }
    states = bool(hidden or stream)
    teacher_forward = compiled(teacher, compile)
    terms_of_logits = compiled(logit_terms, compile)

    def loss_fn(model: nn.Module, batch: Batch):
        ids, mask = _ids_and_mask(batch)
        with torch.no_grad():
            _place(teacher, ids)
            t_out = teacher_forward(
                input_ids=ids,
                attention_mask=mask,
                output_hidden_states=states,
                use_cache=False,  # no key-value cache to build: one forward, no decoding
            )
        kept_layers, written = attention_layers(model) if readout else [], {}
        with contextlib.ExitStack() as stack:
            if kept_layers:
                written = stack.enter_context(capture_mixers(model, kept_layers, stop=False))
            final = stack.enter_context(final_residual(model)) if readout_direct else {}
            s_out = model(
                input_ids=ids,
                attention_mask=mask,
                output_hidden_states=states,
                output_attentions=bool(induction),
                use_cache=False,
            )
        kd_term, ce_term = terms_of_logits(s_out.logits, t_out.logits, ids, mask, temperature)
        terms = {"kd": kd_term, "ce": ce_term}
        if induction or readout:
            targets, copyable = induction_targets(ids, mask)
        if induction:
            attentions = [a for a in s_out.attentions or () if a is not None]
            terms["induction"] = induction_loss(attentions, targets, copyable)
        if readout:
            outputs = [written[i]["output"] for i in kept_layers]
            lens = logit_lens(model)
            terms["readout"] = readout_loss(outputs, lens, ids, copyable, final.get("final"))
        if hidden:
            pairs = list(zip(s_out.hidden_states[1:], t_out.hidden_states[1:], strict=False))
            terms["hidden"] = torch.stack([normalized_mse(s, t, mask) for s, t in pairs]).mean()
        if stream:
            terms["stream"] = stream_loss(s_out.hidden_states[1:], t_out.hidden_states[1:], mask)
        return weighted_sum(terms, weights), {k: v.item() for k, v in terms.items()}

    return loss_fn


def ce_objective():
    """Loss of a whole student: next-token cross-entropy on the data (no teacher)."""

    def loss_fn(model: nn.Module, batch: Batch):
        ids, mask = _ids_and_mask(batch)
        loss = lm_cross_entropy(model(input_ids=ids, attention_mask=mask).logits, ids, mask)
        return loss, {"ce": loss.item()}

    return loss_fn


def perplexity_eval(
    windows: torch.Tensor, batch_size: int = 8, ood_windows: torch.Tensor | None = None
):
    """An eval_fn for `train`: validation loss and perplexity on fixed windows, and on
    out-of-domain windows too where given (a curve that shows whether a student stays general)."""

    def eval_fn(model: nn.Module) -> dict[str, float]:
        loss = validation_loss(model, windows, batch_size)
        out = {"val_loss": loss, "val_ppl": math.exp(loss)}
        if ood_windows is not None:
            ood = validation_loss(model, ood_windows, batch_size)
            out |= {"ood_loss": ood, "ood_ppl": math.exp(ood)}
        return out

    return eval_fn


# --------------------------------------------------------------------------------------- stages


def offset_batches(batches_fn: BatchesFn, offset: int) -> BatchesFn:
    """The same stream shifted by `offset` micro-batches (so consecutive sub-stages see new
    data)."""
    return lambda start: batches_fn(offset + start)


def _sub(config: TrainConfig, steps: int, name: str) -> TrainConfig:
    out_dir = None if config.out_dir is None else f"{config.out_dir}/{name}"
    return dataclasses.replace(
        config,
        steps=steps,
        warmup=min(config.warmup, steps // 4),
        out_dir=out_dir,
        tag=f"{config.tag} {name}".strip(),
    )


def _split_steps(total: int, parts: int) -> list[int]:
    if total < parts:
        raise ValueError(
            f"{total} steps cannot be shared by {parts} sub-stages; give the stage more tokens"
        )
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def progressive(
    student: nn.Module,
    teacher: nn.Module,
    batches_fn: BatchesFn,
    config: TrainConfig,
    input_from: str = "teacher",
    unfreeze: bool = False,
    eval_fn=None,
) -> list[TrainResult]:
    """The paper's progressive transfer: for l = 0, 1, ...: align mixer l to the teacher's attention
    l.

    config.steps are shared by the sub-stages, which see consecutive batches. input_from="teacher"
    feeds each mixer the teacher's input to its layer; "student" the student's own. With unfreeze,
    each alignment is followed by training blocks 0..l together to match the teacher's hidden state
    after block l (MobileBERT-style progressive unfreezing).
    Taught in chapter 6.
    """
    if input_from not in ("teacher", "student"):
        raise ValueError(f"input_from must be 'teacher' or 'student', got {input_from!r}")
    freeze(teacher)
    mixers, blocks = layer_mixers(student), _blocks(student)
    hyena = [
        i for i, m in enumerate(mixers) if isinstance(m, HyenaMixer)
    ]  # a hybrid keeps its attention layers
    steps = _split_steps(config.steps, len(hyena) * (2 if unfreeze else 1))
    results, used = [], 0
    for layer in hyena:
        c = _sub(config, steps.pop(0), f"layer{layer}")
        objective = alignment_objective(
            teacher, layer, student if input_from == "student" else None
        )
        results.append(
            train(MixerOnly(mixers[layer]), objective, offset_batches(batches_fn, used), c)
        )
        used += c.steps * c.grad_accum
        if unfreeze:
            c = _sub(config, steps.pop(0), f"blocks0-{layer}")
            trainable = [p for b in blocks[: layer + 1] for p in b.parameters()]
            results.append(
                train(
                    student,
                    hidden_objective(teacher, layer),
                    offset_batches(batches_fn, used),
                    c,
                    eval_fn=eval_fn,
                    trainable=trainable,
                )
            )
            used += c.steps * c.grad_accum
    return results


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks that hold the mixers, in order (found as the mixers' parents)."""
    mixers = {id(m) for m in layer_mixers(model)}
    found = [mod for mod in model.modules() if any(id(c) in mixers for c in mod.children())]
    if len(found) != len(mixers):
        raise ValueError(
            f"found {len(found)} blocks for {len(mixers)} mixers in {type(model).__name__}"
        )
    return found


def transfer(
    student: nn.Module, teacher: nn.Module, batches_fn: BatchesFn, config: TrainConfig, eval_fn=None
) -> TrainResult:
    """Attention transfer: every Hyena mixer at once learns to reproduce the teacher's attention
    output from the teacher's input to its layer (the first step of LoLCATs); nothing else is
    trained.

    The same alignment as `progressive` with input_from="teacher", but each layer sees the whole
    budget instead of a 1/n_layers share of it. eval_fn, if given, sees the whole student.
    Taught in chapter 6.
    """
    freeze(teacher)
    hyena = {i: m for i, m in enumerate(layer_mixers(student)) if isinstance(m, HyenaMixer)}
    if not hyena:
        raise ValueError("the student has no Hyena mixers to align; give it hyena_layers")
    watch = None if eval_fn is None else (lambda _mixers: eval_fn(student))
    return train(
        MixerSet(hyena), transfer_objective(teacher, list(hyena)), batches_fn, config, eval_fn=watch
    )


def kd(
    student: nn.Module,
    teacher: nn.Module,
    batches_fn: BatchesFn,
    config: TrainConfig,
    kd_weight: float = 1.0,
    ce_weight: float = 0.0,
    hidden_weight: float = 0.0,
    temperature: float = 1.0,
    trainable: str = "all",
    induction_weight: float = 0.0,
    readout_weight: float = 0.0,
    readout_direct: bool = False,
    eval_fn=None,
    stream_weight: float = 0.0,
) -> TrainResult:
    """End-to-end distillation on the logits (plus optional CE, hidden alignment, the stream's
    per-token error (stream_weight) and, for a hybrid,
    the copy-aware loss of hyena_lite.copy_loss, under eager attention, and its read-out loss, of
    the logit lens or with readout_direct of the direct effect);
    trainable: all | mixers | attention (the kept attention layers alone).
    Taught in chapter 7 (the copy-aware and read-out losses in chapter 12).
    With config.compile, the teacher is compiled as the student; the read-out loss hooks into the
    student at every step, so with it both run eagerly."""
    freeze(teacher)
    if readout_weight or readout_direct:
        config = dataclasses.replace(config, compile="no")
    objective = kd_objective(
        teacher,
        kd_weight,
        ce_weight,
        hidden_weight,
        temperature,
        induction_weight,
        readout_weight,
        readout_direct,
        config.compile,
        stream_weight,
    )
    with eager_attention(student) if induction_weight else contextlib.nullcontext():
        return train(
            student,
            objective,
            batches_fn,
            config,
            eval_fn=eval_fn,
            trainable=_trainable(student, trainable),
        )


def ce(student: nn.Module, batches_fn: BatchesFn, config: TrainConfig, eval_fn=None) -> TrainResult:
    """Cross-entropy training on the data alone (the baselines: teacher-initialised, or from
    scratch). Taught in chapter 7."""
    return train(student, ce_objective(), batches_fn, config, eval_fn=eval_fn)


def _trainable(student: nn.Module, which: str) -> list[nn.Parameter] | None:
    if which == "all":
        return None
    if which == "mixers":
        return [p for m in layer_mixers(student) for p in m.parameters()]
    if which == "attention":
        mixers, kept = layer_mixers(student), attention_layers(student)
        if not kept:
            raise ValueError("trainable='attention' needs a hybrid: the student keeps no attention")
        return [p for i in kept for p in mixers[i].parameters()]
    raise ValueError(f"trainable must be 'all', 'mixers' or 'attention', got {which!r}")
