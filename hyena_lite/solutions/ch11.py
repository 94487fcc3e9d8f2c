"""Chapter 11's solutions: bits per byte from perplexity, the goals met, the alignment budget of
one layer, the budget ratio of the two alignment stages, and the model answer on a fair teacher."""

from __future__ import annotations

import math

from hyena_lite.distill import RECIPES


def bpb(ppl: float, tokens: int, n_bytes: int) -> float:
    """The total NLL, tokens x ln(ppl) nats, in bits (over ln 2), per byte."""
    return tokens * math.log(ppl) / (math.log(2) * n_bytes)


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


fair_teacher = """\
The students trained on the training split of the book's three domains; the teacher never saw
them. A lower student perplexity can then come from imitating the teacher or from adapting to
the domains. Control: fine-tune the teacher itself with cross-entropy on exactly the students'
training tokens (same tokens, same order, same count), evaluate it on the same validation
windows, and report each student's perplexity as a multiple of this adapted teacher's. Keep the
students, their budget and the windows unchanged. If the ratios stay near 1.3 and 1.02, the
students imitate well; if they rise, part of the gap was closed by the domains, not by
distillation."""
