"""The control of a distillation: the teacher itself fine-tuned with cross-entropy on exactly the
students' tokens (the same batch stream, the same number of micro-batches), so that what the data
alone does to a model (in and out of domain, and to its recall) is told apart from what replacing
its attention does."""

from __future__ import annotations

import copy
import dataclasses

from torch import nn

from hyena_lite.distill.recipes import Setup
from hyena_lite.distill.stages import ce, freeze
from hyena_lite.training import TrainResult


def fine_tuned_teacher(
    setup: Setup, tokens: int, lr_scale: float = 0.3, name: str = "teacher_ft"
) -> tuple[nn.Module, TrainResult]:
    """A copy of setup.teacher trained with cross-entropy on the first tokens // tokens_per_step
    micro-batches of setup.batches_fn() (what a recipe's stages share among them), at lr_scale
    times the setup's learning rate (0.3: the KD stage's); returned frozen, with its run. With an
    out_dir in the setup's config its checkpoints go to OUT_DIR/NAME, so a stopped run resumes."""
    model = copy.deepcopy(setup.teacher)
    for p in model.parameters():
        p.requires_grad_(True)
    steps = setup.steps_for(tokens)
    c = setup.config
    config = dataclasses.replace(
        c,
        steps=steps,
        lr=c.lr * lr_scale,
        warmup=max(1, steps // 20),
        save_every=max(1, steps // 4),
        out_dir=None if c.out_dir is None else f"{c.out_dir}/{name}",
        tag=name,
    )
    result = ce(model, setup.batches_fn(), config)
    return freeze(model), result
