"""Chapter 11's solutions: the goals met, the alignment budget of one layer and the budget ratio
of the two alignment stages."""

from __future__ import annotations

from hyena_lite.distill import RECIPES


def goals(results: dict) -> dict:
    """Each student's perplexity against its goal times the teacher's."""
    return {
        "hyena": results["hyena_ppl"] <= 1.5 * results["teacher_ppl"],
        "hybrid": results["hybrid_ppl"] <= 1.15 * results["teacher_ppl"],
    }


def alignment_tokens(student: dict, tokens: int) -> float:
    """The first stage's share of the tokens; progressive divides it between the Hyena layers."""
    stage, share, _ = RECIPES[student["recipe"]]["stages"][0]
    per_stage = share * tokens
    return per_stage / len(student["hyena_layers"]) if stage == "progressive" else per_stage


def transfer_over_progressive(hyena_layers: int = 30) -> float:
    """With the same share of the budget, transfer aligns every layer on all of its tokens and
    progressive gives each layer one part in hyena_layers: the ratio is the number of layers."""
    return float(hyena_layers)
