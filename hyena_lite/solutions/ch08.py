"""Chapter 8's solutions: bits per byte, the scored positions of an MQAR sequence, reading the
length curve, and the model answer to the question about comparing perplexities."""

from __future__ import annotations

import math

import torch


def bpb(nll_nats: float, text: str) -> float:
    """Bits per byte: the NLL in nats over ln 2 times the text's UTF-8 bytes (not characters)."""
    return nll_nats / (math.log(2) * len(text.encode("utf-8")))


def mqar_scored(pairs: int, length: int) -> torch.Tensor:
    """True at every answer: after the start token and the D pairs, every second token."""
    scored = torch.zeros(length, dtype=torch.bool)
    scored[1 + 2 * pairs + 1 :: 2] = True
    return scored


def context_gain(curve: dict, train_length: int) -> float:
    """A length curve's perplexity at its first position over that at its last bin within the
    training length."""
    inside = max(i for i, p in enumerate(curve["position"]) if p <= train_length)
    return curve["ppl"][0] / curve["ppl"][inside]


unfair_comparison = """\
The two numbers are not measured the same way, so their ratio mixes the models with the
method. With disjoint chunks the first tokens of every chunk are predicted from almost no
context, so a model that uses its context gets a higher perplexity than the sliding window
would give it; the student looks worse than it is (or, for a model that ignores context, the
two methods agree and the comparison happens to be fair, which you cannot know in advance).
Score both models with the same windows, the same stride and the same texts (the same
tokenizer too, or report bits per byte), and only then take the ratio."""
