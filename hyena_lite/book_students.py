"""The book's students: one chain from chapter 7 to chapter 10.

`book_students(profile)` gives the three students that chapter 7 distils and chapters 8, 9 and 10
evaluate, profile and decode: `distilled` (the best recipe), `scratch` (the same architecture
trained from random weights on the same tokens) and `hybrid` (the best recipe, with attention kept
in the teacher layers whose induction score is highest, hyena_lite.recall); and the control
`teacher_ft`, the teacher fine-tuned with cross-entropy on exactly the students' tokens
(hyena_lite.control), which tells what the data alone does from what the students' mixers do
(chapter 8). Each is trained once
through `distill.run_recipe` (whose stages checkpoint and resume, hyena_lite.training) and cached
under artifacts/book_students/PROFILE/LABEL-KEY, where KEY is the digest of its complete run
identity: library version, teacher name and weights, tokenizer, training data, recipe, token
budget, training settings and seed. A later call with the same identity loads it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

import hyena_lite
from hyena_lite import distill, recall, runs
from hyena_lite.control import fine_tuned_teacher
from hyena_lite.losses import validation_loss
from hyena_lite.paths import artifacts_dir
from hyena_lite.profiles import Profile
from hyena_lite.teacher_data import MixedSetup

# Tokens each student trains on. smoke: 4 optimiser steps (the code runs). cpu: 96 steps of 4,096
# tokens, enough for the hybrid to copy (below); the three students took 80 s at a quarter of
# this on 2 idle cores (book_cpu.json has the chapter's time). gpu: about 1M tokens a student, so
# that chapter 7 stays minutes on a Colab GPU (not yet timed on a GPU). Other profiles: their
# distill_tokens.
TOKENS = {"smoke": 1_024, "cpu": 393_216, "gpu": 1_048_576}
# A quarter of every student's rows are copy and associative-recall sequences (teacher_data's
# recall_row): with the cpu teacher that copies (0.99 at 64 tokens), a hybrid keeping its induction
# layer copied 0.000 after 98,304 corpus tokens, 0.45 after 196,608 tokens of this mix and 0.94
# after 393,216, where the all-Hyena student stays at 0.000 (2 cores, this session's probe).
RECALL_FRACTION = 0.25
# label: the recipe of hyena_lite.distill.RECIPES it is trained by, and whether it keeps attention
STUDENTS = {"distilled": ("best", False), "scratch": ("scratch", False), "hybrid": ("best", True)}
CONTROL = "teacher_ft"  # the control's label and recipe name: not a distillation recipe
CONTROL_SPEC = {"control": "teacher fine-tuned with cross-entropy", "lr_scale": 0.3}
IDENTITY, SUMMARY, MODEL = "identity.json", "summary.json", "student"


@dataclass
class BookStudent:
    """One cached student: its model (eval mode), identity and its key, folder, training summary,
    and whether this call trained it (False: loaded from the cache)."""

    label: str
    recipe: str
    model: nn.Module
    identity: dict[str, Any]
    key: str
    folder: Path
    summary: dict[str, Any]
    trained: bool

    def describe(self) -> str:
        """One line: what the student is and which artefact holds it."""
        how = "trained by this call" if self.trained else "loaded from the cache"
        layers = self.identity["hyena_layers"]
        kind = {None: "all", (): "none"}.get(None if layers is None else tuple(layers), layers)
        return (
            f"{self.label}: recipe {self.recipe!r}, {self.summary['tokens']:,} tokens, "
            f"Hyena layers {kind}; artefact {self.folder} (key {self.key}, {how})"
        )


@dataclass
class BookStudents:
    """The book's three students on one setup (teacher, tokenizer, data), the control (the teacher
    fine-tuned on the same tokens) and the evidence that chose the hybrid's attention layers."""

    setup: distill.Setup
    students: dict[str, BookStudent]
    control: BookStudent
    induction: list[float]  # the teacher's induction score per layer (its best head)
    attention_layers: list[int]  # the layers the hybrid keeps as attention
    tokens: int

    def __getitem__(self, label: str) -> nn.Module:
        if label not in self.students:
            raise KeyError(
                f"no book student {label!r}; the book's students are {', '.join(self.students)}"
            )
        return self.students[label].model

    def describe(self) -> str:
        """The lines a chapter prints: every student, the control and their artefacts."""
        return "\n".join(s.describe() for s in (*self.students.values(), self.control))


def student_tokens(profile: Profile) -> int:
    """The token budget of each of the book's students in this profile."""
    return TOKENS.get(profile.name, profile.distill_tokens)


def attention_layers_for(teacher: nn.Module, tokenizer) -> tuple[list[float], list[int]]:
    """The teacher's induction score per layer and the layers the hybrid keeps as attention: the
    top quarter by induction score (at least one)."""
    scores = recall.head_scores(teacher, tokenizer)["induction"]
    return scores, recall.top_layers(scores, max(1, len(scores) // 4))


def tokenizer_digest(tokenizer) -> str:
    """A short digest of a tokenizer: its class and its vocabulary."""
    return runs.digest([type(tokenizer).__name__, sorted(tokenizer.get_vocab().items())])


def shared_inputs(setup: distill.Setup) -> dict[str, Any]:
    """What every student of a setup depends on: the teacher (name and weights), the tokenizer and
    the training data (computed once per call: hashing a large teacher takes time)."""
    return {
        "teacher": setup.config.context.get("teacher"),
        "teacher_weights": runs.weights_digest(setup.teacher),
        "tokenizer": tokenizer_digest(setup.tokenizer),
        "data": runs.tokens_digest(setup.train_tokens),
        "data_mix": setup.data_mix() if isinstance(setup, MixedSetup) else None,
    }


def identity(
    label: str,
    recipe: str,
    setup: distill.Setup,
    tokens: int,
    hyena_layers: list[int] | None,
    inputs: dict[str, Any],
) -> dict[str, Any]:
    """Everything that decides a student: two equal identities train the same weights. `inputs`
    is shared_inputs(setup)."""
    config = dataclasses.replace(setup.config, out_dir=None, progress=False).identity()
    config.pop("context", None)
    value = {
        "student": label,
        "recipe": recipe,
        "recipe_spec": CONTROL_SPEC if recipe == CONTROL else distill.RECIPES[recipe],
        "tokens": tokens,
        "hyena_layers": hyena_layers,
        "hyena_kwargs": setup.hyena_kwargs,
        **inputs,
        "train": config,
        "library": hyena_lite.__version__,
    }
    return json.loads(json.dumps(value))  # as its file reads back (tuples become lists)


def _with_layers(setup: distill.Setup, hyena_layers: list[int] | None) -> distill.Setup:
    context = {**setup.config.context, "hyena_layers": hyena_layers}
    config = dataclasses.replace(setup.config, context=context)
    return dataclasses.replace(setup, hyena_layers=hyena_layers, config=config)


def _load(folder: Path, wanted: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]] | None:
    """The finished student in `folder` and its summary, or None when there is none (the identity
    file is written last: without it the run is unfinished and resumes)."""
    if not (folder / IDENTITY).is_file():
        return None
    if runs.read_json(folder / IDENTITY) != wanted:
        raise runs.CorruptFile(
            f"{folder / IDENTITY} does not hold the identity its key names; delete {folder} "
            "to train that student again"
        )
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder / MODEL).eval()
    return model, runs.read_json(folder / SUMMARY)


def _train(
    recipe: str, setup: distill.Setup, tokens: int, folder: Path, wanted: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any]]:
    """Train one student by its recipe, its stages checkpointed under folder/runs (a stopped run
    resumes), then save it, its summary (val_ppl on the curve windows, a fraction of the cost of
    the whole validation set) and, last, its identity."""
    config = dataclasses.replace(setup.config, out_dir=str(folder / "runs"))
    setup = dataclasses.replace(setup, config=config, valid_windows=setup.curve_windows)
    with runs.folder_lock(folder):
        if recipe == CONTROL:
            model, result = fine_tuned_teacher(setup, tokens, CONTROL_SPEC["lr_scale"], CONTROL)
            summary = {
                "tokens": result.tokens,
                "wall_seconds": {"ce": result.wall_seconds},
                "val_ppl": validation_ppl(model, setup),
            }
        else:
            run = distill.run_recipe(recipe, setup, tokens)
            model, summary = run.student, distill.summarize(recipe, run, setup)
        model.save_pretrained(folder / MODEL)
        runs.write_json(folder / SUMMARY, summary)
        runs.write_json(folder / IDENTITY, wanted)
    return model.eval(), summary


def book_students(
    profile: Profile,
    setup: distill.Setup | None = None,
    tokens: int | None = None,
    root: str | Path | None = None,
    progress: bool = True,
) -> BookStudents:
    """The book's students for `profile`: each loaded from artifacts/book_students when a student
    of the same identity is there, else trained once (saying so) and cached.

    `setup` reuses a chapter's distill.make_setup(profile) (made here when None); `tokens` overrides
    the profile's budget (student_tokens); `root` the cache folder.
    """
    if setup is None:
        setup = distill.make_setup(profile, progress=progress)
    setup = dataclasses.replace(setup, config=dataclasses.replace(setup.config, progress=progress))
    setup = MixedSetup.from_setup(setup, recall_fraction=RECALL_FRACTION)
    tokens = student_tokens(profile) if tokens is None else tokens
    if tokens < setup.config.tokens_per_step:
        raise ValueError(
            f"a budget of {tokens} tokens is less than one optimiser step "
            f"({setup.config.tokens_per_step} tokens); give each student more tokens"
        )
    root = Path(root) if root is not None else artifacts_dir() / "book_students"
    induction, kept = attention_layers_for(setup.teacher, setup.tokenizer)
    n_layers = len(induction)
    inputs = shared_inputs(setup)
    students = {}
    entries = {**STUDENTS, CONTROL: (CONTROL, False)}
    for label, (recipe, hybrid) in entries.items():
        if recipe == CONTROL:
            layers = []
        else:
            layers = [i for i in range(n_layers) if i not in kept] if hybrid else setup.hyena_layers
        own = _with_layers(setup, layers)
        wanted = identity(label, recipe, own, tokens, layers, inputs)
        key = runs.digest(wanted)
        folder = root / profile.name / f"{label}-{key}"
        found, trained = _load(folder, wanted), False
        if found is None:
            resume = (folder / "runs").is_dir()
            print(
                f"{label}: no finished student of this identity in {folder}: "
                f"{'resuming' if resume else 'training'} it once ({recipe!r} recipe, "
                f"{tokens:,} tokens)"
            )
            found, trained = _train(recipe, own, tokens, folder, wanted), True
        model, summary = found
        students[label] = BookStudent(label, recipe, model, wanted, key, folder, summary, trained)
    control = students.pop(CONTROL)
    return BookStudents(setup, students, control, induction, kept, tokens)


def validation_ppl(model: nn.Module, setup: distill.Setup) -> float:
    """The perplexity of a model on the setup's curve windows, an eighth of its validation tokens
    (chapter 7's comparison of the students, at a cost that fits the cpu book)."""
    return math.exp(validation_loss(model, setup.curve_windows))
