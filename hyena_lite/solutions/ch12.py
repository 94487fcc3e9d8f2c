"""Chapter 12's solutions: bits per byte from perplexity, the layer worst aligned by attention
transfer, the model answer on a fair teacher, and the previous-token partner of an induction
layer."""

from __future__ import annotations

import math


def bpb(ppl: float, tokens: int, n_bytes: int) -> float:
    """The total NLL, tokens x ln(ppl) nats, in bits (over ln 2), per byte."""
    return tokens * math.log(ppl) / (math.log(2) * n_bytes)


def hardest_layer(nmse_after_transfer: dict[int, float]) -> int:
    """The tallest bar of the alignment plot: the layer with the largest NMSE after transfer."""
    return max(nmse_after_transfer, key=nmse_after_transfer.get)


fair_teacher = """\
The students trained on the training split of the book's three domains; the teacher never saw
them. A lower student perplexity can then come from imitating the teacher or from adapting to
the domains. Control: fine-tune the teacher itself with cross-entropy on exactly the students'
training tokens (same tokens, same order, same count), evaluate it on the same validation
windows, and report each student's perplexity as a multiple of this adapted teacher's. Keep the
students, their budget and the windows unchanged. If the students' ratios against the adapted
teacher stay near their ratios against the original, they imitate well; if they rise, part of the
gap was closed by the domains, not by distillation. Score out of domain too: adaptation that
helps in-domain may cost elsewhere, for the teacher as for the students. The run of issue 20 is
this control: fine-tuned on the students' tokens, the teacher gains a fifth in-domain and loses
5% out of domain."""


def previous_token_partner(previous_token: list[float], layer: int) -> int:
    """The layer below `layer` whose best head attends most to the previous token: the head an
    induction head at `layer` most likely reads its keys from."""
    if layer < 1:
        raise ValueError(f"layer {layer} has no layer below it; give an induction layer >= 1")
    return max(range(layer), key=lambda i: previous_token[i])
