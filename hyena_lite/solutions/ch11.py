"""Chapter 11's solutions: how general a student stays, the alignment budget of one layer and the
budget ratio of the two alignment stages."""

from __future__ import annotations

from hyena_lite.distill import RECIPES


def generality(general: dict, model: str) -> float:
    """The model's perplexity over the teacher's out of domain, divided by the same ratio in
    domain: 1 when the model loses no more outside the training domains than inside them."""
    outside = general["out_of_domain"][model] / general["out_of_domain"]["teacher"]
    inside = general[f"{model}_ppl"] / general["teacher_ppl"]
    return outside / inside


def alignment_tokens(student: dict, tokens: int) -> float:
    """The first stage's share of the tokens; progressive divides it between the Hyena layers."""
    stage, share, _ = RECIPES[student["recipe"]]["stages"][0]
    per_stage = share * tokens
    return per_stage / len(student["hyena_layers"]) if stage == "progressive" else per_stage


def transfer_over_progressive(hyena_layers: int = 30) -> float:
    """With the same share of the budget, transfer aligns every layer on all of its tokens and
    progressive gives each layer one part in hyena_layers: the ratio is the number of layers."""
    return float(hyena_layers)
