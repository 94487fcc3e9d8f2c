"""Chapter 2's solutions: the size of the KV cache and the unigram baseline."""

from __future__ import annotations

import math

import torch


def kv_cache_bytes(config, length: int, batch: int, bytes_per_number: int) -> int:
    """Keys and values (2) for every layer, sequence, position and channel."""
    return 2 * config.n_layer * batch * length * config.n_embd * bytes_per_number


def unigram_perplexity(train_tokens: torch.Tensor, targets: torch.Tensor, vocab_size: int) -> float:
    """Add-one token frequencies of the training tokens, scored as a perplexity on `targets`."""
    counts = torch.bincount(train_tokens, minlength=vocab_size).double() + 1
    probabilities = counts / counts.sum()
    return math.exp(-probabilities[targets].log().mean().item())


def mlp_share() -> float:
    """8Nd^2 + 5Nd MLP parameters over all of GPT-2 small (embeddings, blocks, layer norms)."""
    n, d, vocab, positions = 12, 768, 50257, 1024
    mlp = n * (8 * d * d + 5 * d)
    total = vocab * d + positions * d + n * (12 * d * d + 13 * d) + 2 * d
    return mlp / total


def cache_ratio() -> float:
    """1.0: the cache holds 2 N L d numbers per sequence, however the width is split into heads."""
    return 1.0


cache_ratio_why = """The cache stores every layer's keys and values, 2 x N x L x d numbers
per sequence: splitting the same width d into fewer heads changes how attention uses them, not
how many there are. What shrinks the cache is fewer key and value heads than query heads
(grouped-query or multi-query attention, which Llama uses), a narrower model, fewer layers,
fewer bytes per number (float16, int8), or a mixer that keeps no cache at all, as Hyena does
(chapter 10)."""
