"""Distillation of a transformer teacher into a Hyena student: losses, stages, recipes, CLI
`distill`.

Stages: `progressive` (the paper: layer by layer from the bottom, each Hyena mixer learns to
reproduce the teacher's attention output from the teacher's input to that layer), `transfer` (the
same alignment for every layer at once, so that each sees the whole budget), `kd` (end-to-end logit
distillation, optionally with cross-entropy and hidden-state alignment), and `ce` (cross- entropy
only: from a teacher-initialised student, or from a random one, the "scratch" baseline).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hyena_lite.calibration import calibrate_mixers
from hyena_lite.capture import capture_mixer, capture_mixers, first_output, run_until_stop
from hyena_lite.models import HyenaMixer, layer_mixers
from hyena_lite.provenance import provenance
from hyena_lite.training import Batch, BatchesFn, TrainConfig, TrainResult, train

# ----------------------------------------------------------------------------------------- losses


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher || student) of the softened next-token distributions, times T^2, averaged over
    kept tokens."""
    t = temperature
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
    per_token = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1) * t * t
    return _masked_mean(per_token, mask)


def normalized_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """||pred - target||^2 / ||target||^2 over kept positions: 0 is a perfect match, 1 is as bad as
    zeros."""
    error = (pred.float() - target.float()).pow(2).sum(-1)
    energy = target.float().pow(2).sum(-1)
    if mask is not None:
        error, energy = error * mask, energy * mask
    return error.sum() / energy.sum().clamp_min(1e-12)


def weighted_sum(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """sum_k weights[k] * terms[k] over the terms with a non-zero weight."""
    used = [weights[k] * v for k, v in terms.items() if weights.get(k, 0.0)]
    if not used:
        raise ValueError(f"every loss weight is zero ({weights}); give at least one term a weight")
    return torch.stack(used).sum()


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def _ids_and_mask(batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """input_ids and the padding mask (None when nothing is padded) of a tensor or dict batch."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    return batch["input_ids"], batch.get("attention_mask")


def lm_cross_entropy(
    logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Next-token cross-entropy (nats per token) of logits [B, L, V] on ids [B, L], ignoring padded
    targets."""
    per_token = F.cross_entropy(
        logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten(), reduction="none"
    )
    return _masked_mean(per_token, None if mask is None else mask[:, 1:].flatten())


def _shifted(
    logits: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits that predict a real next token (drop the last position), with the matching mask."""
    return logits[:, :-1], None if mask is None else mask[:, 1:]


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
    it."""

    def __init__(self, mixer: nn.Module):
        super().__init__()
        self.mixer = mixer

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return first_output(self.mixer(hidden))


def alignment_objective(teacher: nn.Module, layer: int, student: nn.Module | None = None):
    """Loss of a MixerOnly: normalised MSE to the teacher's mixer output of `layer`.

    The mixer's input is the teacher's input to that layer (teacher forcing), or, when `student` is
    given, the student's own input to that layer (its lower layers as trained so far).
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
    together."""

    def __init__(self, mixers: dict[int, nn.Module]):
        super().__init__()
        self.layers = list(mixers)
        self.mixers = nn.ModuleList(mixers.values())

    def forward(self, inputs: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        return {
            layer: first_output(mixer(inputs[layer]))
            for layer, mixer in zip(self.layers, self.mixers)
        }


def transfer_objective(teacher: nn.Module, layers: list[int]):
    """Loss of a MixerSet: the mean over its layers of the normalised MSE to the teacher's mixer
    output, each mixer fed the teacher's input to its layer (one teacher pass serves every
    layer)."""

    def loss_fn(model: nn.Module, batch: Batch):
        ids, mask = _ids_and_mask(batch)
        with torch.no_grad(), capture_mixers(_place(teacher, ids), layers) as io:
            run_until_stop(lambda: teacher(input_ids=ids, attention_mask=mask))
        outputs = model({layer: io[layer]["input"] for layer in layers})
        losses = torch.stack(
            [normalized_mse(outputs[layer], io[layer]["output"], mask) for layer in layers]
        )
        return losses.mean(), {
            f"nmse_layer{layer}": v for layer, v in zip(layers, losses.detach().tolist())
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


def kd_objective(
    teacher: nn.Module,
    kd: float = 1.0,
    ce: float = 0.0,
    hidden: float = 0.0,
    temperature: float = 1.0,
):
    """Loss of a whole student: kd * KL(teacher || student) + ce * cross-entropy + hidden * mean
    hidden-state NMSE."""
    weights = {"kd": kd, "ce": ce, "hidden": hidden}

    def loss_fn(model: nn.Module, batch: Batch):
        ids, mask = _ids_and_mask(batch)
        with torch.no_grad():
            t_out = _place(teacher, ids)(
                input_ids=ids, attention_mask=mask, output_hidden_states=bool(hidden)
            )
        s_out = model(input_ids=ids, attention_mask=mask, output_hidden_states=bool(hidden))
        s_logits, kept = _shifted(s_out.logits, mask)
        terms = {
            "kd": kd_loss(s_logits, _shifted(t_out.logits, mask)[0], temperature, kept),
            "ce": lm_cross_entropy(s_out.logits, ids, mask),
        }
        if hidden:
            pairs = list(zip(s_out.hidden_states[1:], t_out.hidden_states[1:]))
            terms["hidden"] = torch.stack([normalized_mse(s, t, mask) for s, t in pairs]).mean()
        return weighted_sum(terms, weights), {k: v.item() for k, v in terms.items()}

    return loss_fn


def ce_objective():
    """Loss of a whole student: next-token cross-entropy on the data (no teacher)."""

    def loss_fn(model: nn.Module, batch: Batch):
        ids, mask = _ids_and_mask(batch)
        loss = lm_cross_entropy(model(input_ids=ids, attention_mask=mask).logits, ids, mask)
        return loss, {"ce": loss.item()}

    return loss_fn


def validation_loss(model: nn.Module, windows: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy (nats) of a model over windows [N, L]; exp() of it is the
    perplexity."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            ids = windows[start : start + batch_size].to(device)
            loss = lm_cross_entropy(model(input_ids=ids).logits, ids)
            n = ids.shape[0] * (ids.shape[1] - 1)
            total, count = total + loss.item() * n, count + n
    model.train(was_training)
    return total / count


def perplexity_eval(windows: torch.Tensor, batch_size: int = 8):
    """An eval_fn for `train`: validation loss and perplexity on fixed windows."""

    def eval_fn(model: nn.Module) -> dict[str, float]:
        loss = validation_loss(model, windows, batch_size)
        return {"val_loss": loss, "val_ppl": math.exp(loss)}

    return eval_fn


# --------------------------------------------------------------------------------------- stages


def _offset(batches_fn: BatchesFn, offset: int) -> BatchesFn:
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
        results.append(train(MixerOnly(mixers[layer]), objective, _offset(batches_fn, used), c))
        used += c.steps * c.grad_accum
        if unfreeze:
            c = _sub(config, steps.pop(0), f"blocks0-{layer}")
            trainable = [p for b in blocks[: layer + 1] for p in b.parameters()]
            results.append(
                train(
                    student,
                    hidden_objective(teacher, layer),
                    _offset(batches_fn, used),
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
    eval_fn=None,
) -> TrainResult:
    """End-to-end distillation on the logits (plus optional CE and hidden alignment); trainable:
    all | mixers."""
    freeze(teacher)
    objective = kd_objective(teacher, kd_weight, ce_weight, hidden_weight, temperature)
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
    scratch)."""
    return train(student, ce_objective(), batches_fn, config, eval_fn=eval_fn)


def _trainable(student: nn.Module, which: str) -> list[nn.Parameter] | None:
    if which == "all":
        return None
    if which == "mixers":
        return [p for m in layer_mixers(student) for p in m.parameters()]
    raise ValueError(f"trainable must be 'all' or 'mixers', got {which!r}")


# ------------------------------------------------------------------------------ recipes and runs

# A recipe: its student's initialisation (see hyena_lite.models.convert) and its stages, each with
# its share of the token budget and its options. "paper": the paper's recipe (teacher weights but
# fresh Hyena mixers, progressive transfer, then logit KD); "best": ours (seeded mixers, calibrated
# on the first training batch by hyena_lite.calibration, so that they start no worse than silent
# rather than 100x too loud, and KD with cross-entropy at a lower learning rate; chapter 7 says
# why); "transfer": "best" with every mixer aligned at once (attention transfer, as in LoLCATs)
# instead of one layer after another. The baselines train on the same tokens with cross-entropy
# alone: "ce" (the best recipe's initialisation, uncalibrated) and "scratch" (every weight random,
# the paper's "pre-training"). Progressive alignment steps are cheap (no language-model head, one
# mixer), so they take one sequence each; alignment runs at 3x the learning rate.
ALIGN = {"one_sequence_steps": True, "lr_scale": 3.0}
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"init": "fresh", "stages": [("progressive", 0.25, ALIGN), ("kd", 0.75, {})]},
    "best": {
        "init": "teacher",
        "calibrate": True,
        "stages": [("progressive", 0.25, ALIGN), ("kd", 0.75, {"ce_weight": 0.5, "lr_scale": 0.3})],
    },
    "transfer": {
        "init": "teacher",
        "calibrate": True,
        "stages": [
            ("transfer", 0.25, {"lr_scale": 3.0}),
            ("kd", 0.75, {"ce_weight": 0.5, "lr_scale": 0.3}),
        ],
    },
    "ce": {"init": "teacher", "stages": [("ce", 1.0, {})]},
    "scratch": {"init": "random", "stages": [("ce", 1.0, {})]},
}
STAGES = ("progressive", "transfer", "kd", "ce", "scratch")


@dataclass
class Setup:
    """What every student of one comparison shares: teacher, tokens, batch shape and schedule."""

    teacher: nn.Module
    tokenizer: Any
    train_tokens: torch.Tensor
    valid_windows: torch.Tensor  # the final validation perplexity
    curve_windows: torch.Tensor  # a smaller set, for validation curves during training
    config: TrainConfig  # steps are filled in per stage
    hyena_layers: list[int] | None = None
    hyena_kwargs: dict[str, Any] = field(default_factory=dict)

    def batches_fn(self) -> BatchesFn:
        from hyena_lite.data import iterate_batches

        c = self.config
        return lambda start: iterate_batches(
            self.train_tokens, c.batch_size, c.seq_len, c.seed, start_step=start
        )

    def steps_for(self, tokens: int) -> int:
        return max(1, tokens // self.config.tokens_per_step)

    def calibration_batch(self) -> torch.Tensor:
        """What calibrates a recipe's student: the training stream's first micro-batch (no token
        beyond the budget)."""
        from hyena_lite.data import iterate_batches

        c = self.config
        return next(iterate_batches(self.train_tokens, c.batch_size, c.seq_len, c.seed))


def make_setup(
    profile,
    teacher_name: str | None = None,
    hyena_layers: list[int] | None = None,
    out_dir: str | None = None,
    progress: bool = True,
    grad_accum: int | None = None,
) -> Setup:
    """Load the teacher and the data of a profile, and the training settings shared by all students.

    Each optimiser step takes profile.batch_size sequences, in `grad_accum` micro-batches (less
    memory;
    default: the profile's, results/peak_memory_h200.json).
    """
    grad_accum = profile.grad_accum if grad_accum is None else grad_accum
    if grad_accum < 1 or profile.batch_size % grad_accum:
        raise ValueError(
            f"grad_accum={grad_accum} must divide the profile's batch size {profile.batch_size}"
        )
    from hyena_lite.data import eval_windows, load_corpus, tokenize_split
    from hyena_lite.teachers import load_teacher

    teacher, tokenizer = load_teacher(teacher_name or profile.teacher, profile)
    corpus = load_corpus(profile.corpus)
    valid = tokenize_split(corpus["validation"], tokenizer)
    config = TrainConfig(
        steps=1,
        lr=profile.distill_lr,
        batch_size=profile.batch_size // grad_accum,
        grad_accum=grad_accum,
        seq_len=profile.seq_len,
        seed=profile.seed,
        out_dir=out_dir,
        progress=progress,
        weight_decay=0.0,
    )
    return Setup(
        freeze(teacher),
        tokenizer,
        tokenize_split(corpus["train"], tokenizer),
        eval_windows(valid, profile.seq_len, profile.eval_tokens),
        eval_windows(valid, profile.seq_len, max(profile.eval_tokens // 8, profile.seq_len)),
        config,
        hyena_layers,
    )


def make_student(setup: Setup, init: str) -> nn.Module:
    """A Hyena student of the setup's teacher, seeded: init "teacher", "fresh" or "random" (see
    convert)."""
    from hyena_lite.models import convert

    torch.manual_seed(setup.config.seed)
    return convert(setup.teacher, hyena_layers=setup.hyena_layers, init=init, **setup.hyena_kwargs)


def _rows(batches_fn: BatchesFn, rows: int) -> BatchesFn:
    """The same stream cut into one-sequence micro-batches: item k is row k % rows of micro-batch k
    // rows."""

    def fn(start: int):
        skip = start % rows
        for batch in batches_fn(start // rows):
            for i in range(skip, rows):
                yield batch[i : i + 1]
            skip = 0

    return fn


def run_stage(
    stage: str,
    student: nn.Module,
    setup: Setup,
    tokens: int,
    name: str,
    offset: int = 0,
    lr_scale: float = 1.0,
    one_sequence_steps: bool = False,
    **options,
) -> list[TrainResult]:
    """Train `student` in place with one stage on `tokens` tokens, from micro-batch `offset` of the
    stream.

    lr_scale multiplies the setup's learning rate; one_sequence_steps makes each optimiser step take
    one sequence of the same stream (more, smaller steps on the same tokens: right for the cheap
    progressive stage, whose steps skip the language-model head).
    """
    c = setup.config
    batches = _offset(setup.batches_fn(), offset)
    steps = setup.steps_for(tokens)
    if one_sequence_steps:
        batches, steps = _rows(batches, c.batch_size), steps * c.batch_size * c.grad_accum
        c = dataclasses.replace(c, batch_size=1, grad_accum=1)
    out = None if c.out_dir is None else f"{c.out_dir}/{name}"
    config = dataclasses.replace(
        c,
        steps=steps,
        lr=c.lr * lr_scale,
        warmup=max(1, steps // 20),
        out_dir=out,
        eval_every=max(1, steps // 5),
        save_every=max(1, steps // 8),
        tag=name,
    )
    eval_fn = perplexity_eval(setup.curve_windows)
    if stage == "progressive":
        return progressive(student, setup.teacher, batches, config, eval_fn=eval_fn, **options)
    if stage == "transfer":
        return [transfer(student, setup.teacher, batches, config, eval_fn=eval_fn, **options)]
    if stage == "kd":
        return [kd(student, setup.teacher, batches, config, eval_fn=eval_fn, **options)]
    if stage in ("ce", "scratch"):
        return [ce(student, batches, config, eval_fn=eval_fn)]
    raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")


@dataclass
class RecipeRun:
    """A trained student, its training runs per stage, its validation perplexity (on the curve
    windows) at initialisation, after calibration (if the recipe calibrates) and after each stage,
    and the calibration's report per Hyena layer (see hyena_lite.calibration.calibrate_mixers)."""

    student: nn.Module
    runs: dict[str, list[TrainResult]]
    ppl_after: dict[str, float]
    calibration: dict[int, dict[str, float]] = field(default_factory=dict)


def run_recipe(recipe: str, setup: Setup, tokens: int) -> RecipeRun:
    """Build the recipe's student and train it through its stages on `tokens` tokens in all."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    spec = RECIPES[recipe]
    student = make_student(setup, spec["init"])
    run = RecipeRun(student, {}, {"init": math.exp(validation_loss(student, setup.curve_windows))})
    prefix = recipe
    if spec.get("calibrate"):
        run.calibration = calibrate_mixers(student, setup.teacher, setup.calibration_batch())
        run.ppl_after["calibrate"] = math.exp(validation_loss(student, setup.curve_windows))
        prefix = f"{recipe}/calibrated"  # its own runs: finished runs of the uncalibrated recipe must not be reused
    offset = 0
    for i, (stage, share, options) in enumerate(spec["stages"]):
        runs = run_stage(
            stage, student, setup, int(tokens * share), f"{prefix}/{i}-{stage}", offset, **options
        )
        run.runs[stage] = runs
        run.ppl_after[stage] = math.exp(validation_loss(student, setup.curve_windows))
        offset += sum(r.tokens for r in runs) // (setup.config.batch_size * setup.config.seq_len)
    return run


def _downsample(values: list[float], points: int = 100) -> list[float]:
    """At most `points` means of consecutive chunks: a loss curve small enough for a results
    file."""
    if len(values) <= points:
        return [float(v) for v in values]
    edges = [round(i * len(values) / points) for i in range(points + 1)]
    return [float(sum(values[a:b]) / (b - a)) for a, b in zip(edges[:-1], edges[1:])]


def summarize(recipe: str, run: RecipeRun, setup: Setup) -> dict:
    """Validation perplexity, tokens, wall time per stage and the curves of one trained student."""
    offset, curves = 0, {}
    for stage, parts in run.runs.items():
        for i, part in enumerate(parts):
            records = part.records
            curves[stage if len(parts) == 1 else f"{stage}/{i}"] = {
                "tokens": _downsample([offset + r["tokens"] for r in records]),
                "loss": _downsample(part.losses),
                "ce": _downsample([r["ce"] for r in records]) if "ce" in records[0] else None,
                "val_ppl": [
                    [offset + records[e["step"] - 1]["tokens"], e["val_ppl"]]
                    for e in part.evals
                    if "val_ppl" in e
                ],
            }
            offset += part.tokens
    return {
        "recipe": RECIPES[recipe],
        "val_ppl": math.exp(validation_loss(run.student, setup.valid_windows)),
        "tokens": offset,
        "wall_seconds": {
            stage: sum(part.wall_seconds for part in parts) for stage, parts in run.runs.items()
        },
        "steps": sum(len(part.records) for parts in run.runs.values() for part in parts),
        "curve_ppl_after": run.ppl_after,
        "calibration": run.calibration,
        "curves": curves,
    }


def compare(
    setup: Setup,
    tokens: int,
    recipes: tuple[str, ...] = ("paper", "best", "transfer", "ce", "scratch"),
) -> dict:
    """Train one student per recipe on the same `tokens` tokens and measure them against the
    teacher.

    The summary has teacher_ppl, RECIPE_ppl for each recipe, distilled_ppl (the best recipe's),
    tokens (per student), wall_seconds (per student and stage) and each student's details.
    """
    students = {}
    for recipe in recipes:
        run = run_recipe(recipe, setup, tokens)
        students[recipe] = summarize(recipe, run, setup)
        if setup.config.out_dir:
            folder = f"{setup.config.out_dir}/{recipe}/student"
            run.student.save_pretrained(folder)
            setup.tokenizer.save_pretrained(folder)
    tokens_seen = {name: s["tokens"] for name, s in students.items()}
    step_tokens = setup.config.tokens_per_step
    if max(tokens_seen.values()) - min(tokens_seen.values()) >= step_tokens * max(
        len(RECIPES[r]["stages"]) for r in students
    ):
        # each stage's share of the budget is rounded down to whole steps: up to one step per stage
        # apart
        raise RuntimeError(f"the students saw different numbers of tokens: {tokens_seen}")
    report = {
        "teacher_ppl": math.exp(validation_loss(setup.teacher, setup.valid_windows)),
        **{f"{name}_ppl": s["val_ppl"] for name, s in students.items()},
    }
    if "best" in students:
        report["distilled_recipe"], report["distilled_ppl"] = "best", students["best"]["val_ppl"]
    report.update(
        tokens=max(tokens_seen.values()),
        tokens_per_student=tokens_seen,
        wall_seconds={name: s["wall_seconds"] for name, s in students.items()},
        students=students,
    )
    return report


def matmul_flops_per_token(model: nn.Module, seq_len: int, attention_layers: int = 0) -> float:
    """Forward FLOPs per token in matrix products: 2 x the weights used per token (the head once, no
    position table) plus 4 x seq_len x width per attention layer (scores and weighted sum); FFTs are
    not counted."""
    weights = sum(
        p.numel()
        for n, p in model.named_parameters()
        if p.ndim >= 2 and "wpe" not in n and "filter_fn" not in n
    )
    return 2.0 * weights + 4.0 * seq_len * model.config.hidden_size * attention_layers


def throughput(
    teacher: nn.Module, stage: str, config: TrainConfig, skip: int = 5
) -> dict[str, float]:
    """Tokens per second and model FLOPs per second of `stage` ("kd", "ce" or "teacher": the teacher
    itself trained with cross-entropy, for comparison) on random tokens, after `skip` warm-up
    steps."""
    from hyena_lite.models import convert

    vocab = teacher.config.vocab_size

    def batches_fn(start: int):
        g = torch.Generator().manual_seed(start)
        while True:
            yield torch.randint(0, vocab, (config.batch_size, config.seq_len), generator=g)

    torch.manual_seed(config.seed)
    layers = teacher.config.num_hidden_layers
    if stage == "teacher":
        model = type(teacher)(teacher.config)
        result = ce(model, batches_fn, config)
        flops = 3 * matmul_flops_per_token(model, config.seq_len, layers)
    else:
        model = convert(teacher, init="teacher")
        result = (
            kd(model, teacher, batches_fn, config, ce_weight=0.5)
            if stage == "kd"
            else ce(model, batches_fn, config)
        )
        flops = 3 * matmul_flops_per_token(model, config.seq_len)
        if stage == "kd":
            flops += matmul_flops_per_token(
                teacher, config.seq_len, layers
            )  # the teacher's forward pass
    timed = result.records[skip:]
    seconds = timed[-1]["wall_seconds"] - result.records[skip - 1]["wall_seconds"]
    tokens = timed[-1]["tokens"] - result.records[skip - 1]["tokens"]
    return {
        "tokens_per_second": tokens / seconds,
        "model_flops_per_token": flops,
        "model_tflops_per_second": flops * tokens / seconds / 1e12,
        "timed_steps": len(timed),
        "final_loss": result.losses[-1],
    }


def matmul_ceiling(size: int = 8192, repeats: int = 10) -> float:
    """Measured TFLOP/s of a bf16 [size x size] matrix product on the current GPU (the MFU
    denominator)."""
    a, b = (torch.randn(size, size, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (start.elapsed_time(end) / 1e3) / 1e12


def gpu_throughput(steps: int = 30, batch_size: int = 16, seq_len: int = 1024) -> dict[str, Any]:
    """KD, CE and teacher training speed at GPT-2 124M shape (random weights) on one GPU, in bf16,
    with MFU."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if not torch.cuda.is_available():
        raise RuntimeError("gpu_throughput needs a CUDA GPU; none is visible here")
    torch.manual_seed(0)
    teacher = freeze(GPT2LMHeadModel(GPT2Config(n_positions=seq_len)))
    config = TrainConfig(
        steps=steps, lr=6e-4, warmup=2, batch_size=batch_size, seq_len=seq_len, progress=False
    )
    ceiling = matmul_ceiling()
    report = {
        "shape": "GPT-2 124M (12 layers, width 768, 12 heads, vocab 50257), random weights",
        "batch_size": batch_size,
        "seq_len": seq_len,
        "steps": steps,
        "precision": "bf16 autocast",
        "measured_bf16_matmul_tflops": ceiling,
        "datasheet_bf16_dense_tflops": 989.0,
        "stages": {},
    }
    for stage in ("kd", "ce", "teacher"):
        row = throughput(teacher, stage, config)
        row["mfu_vs_measured_matmul"] = row["model_tflops_per_second"] / ceiling
        row["mfu_vs_datasheet"] = row["model_tflops_per_second"] / 989.0
        report["stages"][stage] = row
        print(
            f"{stage:>8}: {row['tokens_per_second']:,.0f} tokens/s, {row['model_tflops_per_second']:.1f} TFLOP/s, "
            f"MFU {row['mfu_vs_datasheet']:.1%} of the datasheet, {row['mfu_vs_measured_matmul']:.1%} of the "
            f"measured matmul ({ceiling:.0f} TFLOP/s)"
        )
    return report


# ------------------------------------------------------------------------------------------- CLI


def cli_arguments(parser) -> None:
    """Options of `python -m hyena_lite distill`."""
    parser.add_argument(
        "--profile",
        default=None,
        help="smoke, cpu or gpu (default: $HYENA_BOOK_PROFILE, else by hardware)",
    )
    parser.add_argument("--teacher", default=None, help="teacher name (default: the profile's)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--stage", choices=STAGES, help="run one stage on one student")
    what.add_argument(
        "--recipe", choices=sorted(RECIPES), help="run a recipe's stages on its student"
    )
    what.add_argument(
        "--compare",
        action="store_true",
        help="teacher, paper, best, transfer, ce and scratch students on the same tokens; writes --results",
    )
    what.add_argument(
        "--gpu-throughput",
        action="store_true",
        help="tokens/s and MFU of KD, CE and teacher training at GPT-2 124M shape on a GPU; "
        "writes --results",
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="training tokens per student (default: the profile's)",
    )
    parser.add_argument(
        "--init",
        choices=("teacher", "fresh", "random"),
        default="teacher",
        help="--stage only: the student's initialisation (see hyena_lite.models.convert); "
        "--stage scratch always uses random",
    )
    parser.add_argument(
        "--hyena-layers", default=None, help="comma-separated layers to convert (default: all)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="folder of checkpoints, logs and students (default: artifacts/distill/PROFILE)",
    )
    parser.add_argument("--results", default=None, help="--compare: write the JSON summary here")
    parser.add_argument(
        "--grad-accum",
        type=int,
        default=None,
        help="split each step's batch into this many micro-batches (less memory, same tokens; "
        "default: the profile's)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def cli_main(args) -> int:
    """Run the chosen stage, recipe or comparison; print validation perplexities."""
    import json

    from hyena_lite.paths import artifacts_dir
    from hyena_lite.profiles import get_profile

    if args.gpu_throughput:
        command = "python -m hyena_lite distill --gpu-throughput"
        report = {
            **provenance(command + (f" --results {args.results}" if args.results else "")),
            **gpu_throughput(),
        }
        if args.results:
            with open(args.results, "w") as f:
                json.dump(report, f, indent=1)
        return 0
    profile = get_profile(args.profile)
    tokens = args.tokens or profile.distill_tokens
    layers = None if args.hyena_layers is None else [int(x) for x in args.hyena_layers.split(",")]
    out = args.out or str(artifacts_dir() / "distill" / profile.name)
    setup = make_setup(
        profile,
        args.teacher,
        layers,
        out,
        progress=not args.no_progress,
        grad_accum=args.grad_accum,
    )
    if args.compare:
        report = compare(setup, tokens)
        teacher = args.teacher or profile.teacher
        command = (
            f"python -m hyena_lite distill --profile {profile.name} --compare --tokens {tokens} "
            f"--grad-accum {setup.config.grad_accum} --out {out}"
            + (f" --results {args.results}" if args.results else "")
        )
        report = {
            **provenance(command),
            "teacher": teacher,
            "profile": profile.name,
            "teacher_train_tokens": profile.teacher_tokens if teacher == "mini-gpt2" else None,
            **report,
            "total_train_seconds": sum(sum(w.values()) for w in report["wall_seconds"].values()),
        }
        for recipe, student in report["students"].items():
            print(
                f"{recipe:>8}: val ppl {student['val_ppl']:.2f} ({student['val_ppl'] / report['teacher_ppl']:.2f}x "
                f"the teacher's {report['teacher_ppl']:.2f}), {student['tokens']:,} tokens"
            )
        if args.results:
            with open(args.results, "w") as f:
                json.dump(report, f, indent=1)
            print(f"wrote {args.results}")
        return 0
    if args.recipe:
        student = run_recipe(args.recipe, setup, tokens).student
        name = args.recipe
    else:
        student = make_student(setup, "random" if args.stage == "scratch" else args.init)
        name = f"stage-{args.stage}-{args.init}"
        run_stage(args.stage, student, setup, tokens, name)
    folder = f"{out}/{name}/student"
    student.save_pretrained(folder)
    setup.tokenizer.save_pretrained(folder)
    ppl = math.exp(validation_loss(student, setup.valid_windows))
    print(f"{name}: validation perplexity {ppl:.2f}; student saved to {folder}")
    return 0
