"""Distillation of a transformer teacher into a Hyena student, in three small modules:

- `hyena_lite.losses`: KD, normalised MSE, the stream's per-token error, cross-entropy, and the
  validation loss;
- `hyena_lite.distill.stages`: the objectives and the stages (progressive, transfer, kd, ce);
- `hyena_lite.distill.recipes`: a student's initialisation and its stages on one shared setup.

This index gathers what the chapters call as `distill.NAME` (chapters 6 and 7 teach them), with
the capture hooks of `hyena_lite.capture` that the stages are built on.
"""

from hyena_lite.capture import capture_mixer, capture_mixers, first_output, run_until_stop
from hyena_lite.distill.recipes import (
    ALIGN,
    INDUCTION_STAGE,
    RECIPES,
    STAGES,
    RecipeRun,
    Setup,
    make_setup,
    make_student,
    run_induction_stage,
    run_recipe,
    run_stage,
    stage_curve,
    summarize,
    summarize_run,
)
from hyena_lite.distill.stages import (
    MixerOnly,
    MixerSet,
    alignment_objective,
    ce,
    ce_objective,
    freeze,
    hidden_objective,
    kd,
    kd_objective,
    perplexity_eval,
    progressive,
    transfer,
    transfer_objective,
)
from hyena_lite.losses import (
    kd_loss,
    lm_cross_entropy,
    normalized_mse,
    stream_loss,
    token_nmse,
    validation_loss,
    weighted_sum,
)

__all__ = [
    "ALIGN",
    "INDUCTION_STAGE",
    "RECIPES",
    "STAGES",
    "MixerOnly",
    "MixerSet",
    "RecipeRun",
    "Setup",
    "alignment_objective",
    "capture_mixer",
    "capture_mixers",
    "ce",
    "ce_objective",
    "first_output",
    "freeze",
    "hidden_objective",
    "kd",
    "kd_loss",
    "kd_objective",
    "lm_cross_entropy",
    "make_setup",
    "make_student",
    "normalized_mse",
    "perplexity_eval",
    "progressive",
    "run_induction_stage",
    "run_recipe",
    "run_stage",
    "run_until_stop",
    "summarize",
    "stage_curve",
    "stream_loss",
    "summarize_run",
    "token_nmse",
    "transfer",
    "transfer_objective",
    "validation_loss",
    "weighted_sum",
]
