"""Recipes: a student's initialisation and its stages, each with its share of a token budget,
run on one shared setup (teacher, tokens, batch shape and schedule).

Taught in chapters 6 and 7 (chapter 11 runs them at scale); `python -m hyena_lite distill --recipe
NAME` runs one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hyena_lite.calibration import calibrate_mixers
from hyena_lite.distill import stages
from hyena_lite.losses import validation_loss
from hyena_lite.training import BatchesFn, TrainConfig, TrainResult

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
    # LoLCATs' division of labour: after the transfer only the token mixers learn, the teacher's
    # MLPs, embeddings and norms stay as they are (what the student knows outside the corpus)
    "transfer_mixers": {
        "init": "teacher",
        "calibrate": True,
        "stages": [
            ("transfer", 0.25, {"lr_scale": 3.0}),
            ("kd", 0.75, {"ce_weight": 0.5, "lr_scale": 0.3, "trainable": "mixers"}),
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
    ood_curve_windows: torch.Tensor | None = None  # out-of-domain windows, curves only

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
    compile: str = "no",
) -> Setup:
    """Load the teacher and the data of a profile, and the training settings shared by all students.

    Each optimiser step takes profile.batch_size sequences, in `grad_accum` micro-batches (less
    memory; default: the profile's, results/peak_memory_h200.json). `compile`: TrainConfig.compile
    for every stage (torch.compile; worth its minutes of compiling on long GPU runs).
    Taught in chapter 6.
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
    train_tokens = tokenize_split(corpus["train"], tokenizer)
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
        compile=compile,
        context=setup_identity(
            teacher_name or profile.teacher, teacher, train_tokens, hyena_layers
        ),
    )
    return Setup(
        stages.freeze(teacher),
        tokenizer,
        train_tokens,
        eval_windows(valid, profile.seq_len, profile.eval_tokens),
        eval_windows(valid, profile.seq_len, max(profile.eval_tokens // 8, profile.seq_len)),
        config,
        hyena_layers,
    )


def setup_identity(
    teacher_name: str,
    teacher: nn.Module,
    train_tokens: torch.Tensor,
    hyena_layers: list[int] | None,
) -> dict[str, Any]:
    """What a setup's runs depend on beyond their TrainConfig: the teacher (name and weights), the
    data, the student's layers (hyena_lite.runs); part of every run's identity, so that no other
    setup reuses its runs."""
    from hyena_lite import runs

    return {
        "teacher": teacher_name,
        "teacher_weights": runs.weights_digest(teacher),
        "data": runs.tokens_digest(train_tokens),
        "hyena_layers": hyena_layers,
    }


def make_student(setup: Setup, init: str) -> nn.Module:
    """A Hyena student of the setup's teacher, seeded: init "teacher", "fresh" or "random" (see
    convert). Taught in chapter 6."""
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
    Taught in chapter 10.
    """
    c = setup.config
    batches = stages.offset_batches(setup.batches_fn(), offset)
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
        context={**c.context, "stage": stage, "options": options},
    )
    eval_fn = stages.perplexity_eval(setup.curve_windows, ood_windows=setup.ood_curve_windows)
    if stage == "progressive":
        return stages.progressive(
            student, setup.teacher, batches, config, eval_fn=eval_fn, **options
        )
    if stage == "transfer":
        return [
            stages.transfer(student, setup.teacher, batches, config, eval_fn=eval_fn, **options)
        ]
    if stage == "kd":
        return [stages.kd(student, setup.teacher, batches, config, eval_fn=eval_fn, **options)]
    if stage in ("ce", "scratch"):
        return [stages.ce(student, batches, config, eval_fn=eval_fn)]
    raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")


@dataclass
class RecipeRun:
    """A trained student, its training runs per stage, its validation perplexity (on the curve
    windows) at initialisation, after calibration (if the recipe calibrates) and after each stage,
    the calibration's report per Hyena layer (see hyena_lite.calibration.calibrate_mixers), and
    the first micro-batch of the stream that its stages did not use (where a further stage starts).
    """

    student: nn.Module
    runs: dict[str, list[TrainResult]]
    ppl_after: dict[str, float]
    calibration: dict[int, dict[str, float]] = field(default_factory=dict)
    next_batch: int = 0


def run_recipe(
    recipe: str,
    setup: Setup,
    tokens: int,
    after_stage: Callable[[str, nn.Module], None] | None = None,
    stage_options: dict[str, dict[str, Any]] | None = None,
    stage_tokens: dict[str, int] | None = None,
) -> RecipeRun:
    """Build the recipe's student and train it through its stages on `tokens` tokens in all;
    after_stage(name, student), if given, sees the student at "init", after "calibrate" (if the
    recipe calibrates) and after every stage (a probe of what each stage changes). stage_options
    {stage: {option: value}} adds to or overrides the recipe's options of those stages (e.g.
    {"kd": {"induction_weight": 0.5}}); stage_tokens {stage: tokens} gives those stages their own
    budgets instead of their share of `tokens` (e.g. a longer attention transfer)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    spec = RECIPES[recipe]
    extra, budgets = stage_options or {}, stage_tokens or {}
    for what, named in (("stage_options", extra), ("stage_tokens", budgets)):
        unknown = set(named) - {stage for stage, _, _ in spec["stages"]}
        if unknown:
            raise ValueError(
                f"{what} names stages {sorted(unknown)} that recipe {recipe!r} does not run "
                f"(its stages: {', '.join(stage for stage, _, _ in spec['stages'])})"
            )
    student = make_student(setup, spec["init"])
    run = RecipeRun(student, {}, {"init": math.exp(validation_loss(student, setup.curve_windows))})
    probe = after_stage or (lambda _name, _student: None)
    probe("init", student)
    prefix = recipe
    if spec.get("calibrate"):
        run.calibration = calibrate_mixers(student, setup.teacher, setup.calibration_batch())
        run.ppl_after["calibrate"] = math.exp(validation_loss(student, setup.curve_windows))
        probe("calibrate", student)
        # its own runs: finished runs of the uncalibrated recipe must not be reused
        prefix = f"{recipe}/calibrated"
    offset = 0
    for i, (stage, share, options) in enumerate(spec["stages"]):
        options = {**options, **extra.get(stage, {})}
        budget = budgets.get(stage, int(tokens * share))
        runs = run_stage(stage, student, setup, budget, f"{prefix}/{i}-{stage}", offset, **options)
        run.runs[stage] = runs
        run.ppl_after[stage] = math.exp(validation_loss(student, setup.curve_windows))
        probe(stage, student)
        offset += sum(r.tokens for r in runs) // (setup.config.batch_size * setup.config.seq_len)
    run.next_batch = offset
    return run


# The induction stage of chapter 12 (lesson 9): after a recipe, KD plus the copy-aware loss
# (hyena_lite.copy_loss) on rows with a larger share of copy and recall sequences, at three times
# the KD learning rate and without cross-entropy; it teaches a hybrid's kept attention to copy.
INDUCTION_STAGE: dict[str, float] = {
    "kd_weight": 1.0,
    "ce_weight": 0.0,
    "induction_weight": 1.0,
    "lr_scale": 3.0,
}


def run_induction_stage(
    student: nn.Module,
    setup: Setup,
    tokens: int,
    recall_fraction: float,
    offset: int,
    name: str = "induction",
    **options,
) -> TrainResult:
    """Train a hybrid `student` in place with the induction stage (INDUCTION_STAGE, `options`
    adding to or overriding it) on `tokens` tokens whose rows are copy and recall sequences with
    share `recall_fraction`, the other sources keeping their proportions
    (MixedSetup.with_recall), from micro-batch `offset` (after a recipe: its
    RecipeRun.next_batch)."""
    if not hasattr(setup, "with_recall"):
        raise TypeError(
            f"the induction stage mixes recall rows into the data, which {type(setup).__name__} "
            "cannot: give a hyena_lite.teacher_data.MixedSetup (MixedSetup.from_setup(setup))"
        )
    if not 0.0 < recall_fraction <= 1.0:
        raise ValueError(f"recall_fraction must be in (0, 1], got {recall_fraction}")
    rows = setup.with_recall(recall_fraction)
    (result,) = run_stage(
        "kd", student, rows, tokens, name, offset, **{**INDUCTION_STAGE, **options}
    )
    return result


def _downsample(values: list[float], points: int = 100) -> list[float]:
    """At most `points` means of consecutive chunks: a loss curve small enough for a results
    file."""
    if len(values) <= points:
        return [float(v) for v in values]
    edges = [round(i * len(values) / points) for i in range(points + 1)]
    return [float(sum(values[a:b]) / (b - a)) for a, b in zip(edges[:-1], edges[1:], strict=False)]


def stage_curve(part: TrainResult, offset: int) -> dict:
    """One trained stage's curves for a results file: its training loss (and cross-entropy where
    it has one) against the tokens seen, counted from `offset` tokens trained before it, and its
    validation perplexities (in domain, and out of domain where the stage measured it)."""
    records = part.records

    def measured(key: str) -> list[list[float]]:
        return [[offset + records[e["step"] - 1]["tokens"], e[key]] for e in part.evals if key in e]

    return {
        "tokens": _downsample([offset + r["tokens"] for r in records]),
        "loss": _downsample(part.losses),
        "ce": _downsample([r["ce"] for r in records]) if "ce" in records[0] else None,
        "val_ppl": measured("val_ppl"),
        "ood_ppl": measured("ood_ppl"),
    }


def summarize(recipe: str, run: RecipeRun, setup: Setup) -> dict:
    """Validation perplexity, tokens, wall time per stage and the curves of one trained student."""
    return {"recipe": RECIPES[recipe], **summarize_run(run, setup)}


def summarize_run(run: RecipeRun, setup: Setup) -> dict:
    """summarize without the recipe: for a model trained outside RECIPES (the control)."""
    offset, curves = 0, {}
    for stage, parts in run.runs.items():
        for i, part in enumerate(parts):
            curves[stage if len(parts) == 1 else f"{stage}/{i}"] = stage_curve(part, offset)
            offset += part.tokens
    return {
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
