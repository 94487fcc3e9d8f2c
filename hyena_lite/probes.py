"""Probes of what a causal LM does with its context: cloze (last-word) accuracy, copying,
associative recall.

Every probe works on any model whose `model(input_ids=ids)` returns an object with `.logits`
(a Hugging Face causal LM, teacher or student). Targets are scored greedily under teacher forcing:
a target span counts as predicted when the argmax at every one of its positions is the right token,
which is exactly what greedy decoding would have produced.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from hyena_lite.data import ordinary_tokens

# A sentence-final word of at least three letters, preceded by a space: the cloze target.
_FINAL_WORD = re.compile(r" ([A-Za-z]{3,})[.!?]")
_CHARS_PER_TOKEN = 8  # generous: English BPE averages about 4 characters per token


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.inference_mode()
def greedy_hits(model: torch.nn.Module, ids: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """For every position t with scored[b, t], whether the argmax of the logits at t - 1 is ids[b,
    t].

    Aligned with ids[:, 1:]. Only the logits from the first scored position on are computed.
    """
    columns = scored[:, 1:].any(0).nonzero()
    first = 1 + int(columns[0]) if len(columns) else ids.shape[1]
    keep = ids.shape[1] - first + 1
    logits = model(input_ids=ids.to(model_device(model)), logits_to_keep=keep).logits[:, -keep:]
    hits = torch.zeros_like(scored[:, 1:])
    hits[:, first - 1 :] = (logits[:, :-1].argmax(-1).cpu() == ids[:, first:]) & scored[:, first:]
    return hits


def _accuracy(
    model: torch.nn.Module, ids: torch.Tensor, scored: torch.Tensor, batch_size: int
) -> float:
    """The fraction of scored positions predicted greedily, over batches of rows."""
    hits = sum(
        int(greedy_hits(model, ids[i : i + batch_size], scored[i : i + batch_size]).sum())
        for i in range(0, len(ids), batch_size)
    )
    return hits / int(scored[:, 1:].sum())


# --- cloze ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClozeExample:
    """A passage of token ids whose last `n_target` tokens spell the final word `word`."""

    ids: tuple[int, ...]
    n_target: int
    word: str


def cloze_examples(texts: Sequence[str], tokenizer, n: int, length: int) -> list[ClozeExample]:
    """Up to n LAMBADA-style passages of exactly `length` tokens, each ending in a sentence-final
    word.

    Deterministic: candidates are taken in text order, never overlapping, and the texts are visited
    in turn (round robin) so that every text contributes. The target is the word with its leading
    space, tokenized on its own, as BPE tokenizers split it inside running text.
    Taught in chapter 8.
    """
    if length < 4:
        raise ValueError(f"cloze passages need at least 4 tokens, got length={length}")
    span = length * _CHARS_PER_TOKEN
    per_text = [_cloze_candidates(text, tokenizer, length, span) for text in texts]
    examples: list[ClozeExample] = []
    while len(examples) < n and any(per_text):
        for candidates in per_text:
            if candidates and len(examples) < n:
                examples.append(candidates.pop(0))
    return examples


def _cloze_candidates(text: str, tokenizer, length: int, span: int) -> list[ClozeExample]:
    """Every non-overlapping cloze passage of one text, in order."""
    found, free_from = [], 0
    for match in _FINAL_WORD.finditer(text):
        begin = match.start() - span
        if begin < free_from:
            continue
        word = match.group(1)
        target = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        context = tokenizer(text[begin : match.start()], add_special_tokens=False)["input_ids"]
        keep = length - len(target)
        if keep < 1 or len(context) < keep + 1:  # +1: the first token may be a cut word
            continue
        found.append(ClozeExample(tuple(context[-keep:] + target), len(target), word))
        free_from = match.end()
    return found


def cloze_accuracy(
    model: torch.nn.Module, examples: Sequence[ClozeExample], batch_size: int = 16
) -> float:
    """The fraction of passages whose final word is predicted greedily, all of its tokens.
    Taught in chapter 8."""
    if not examples:
        raise ValueError(
            "no cloze passages: the texts are too short or have no sentence-final words"
        )
    correct = 0
    for i in tqdm(range(0, len(examples), batch_size), desc="cloze", leave=False):
        batch = examples[i : i + batch_size]
        ids = torch.tensor([e.ids for e in batch])
        scored = torch.zeros_like(ids, dtype=torch.bool)
        for row, example in enumerate(batch):
            scored[row, -example.n_target :] = True
        hits = greedy_hits(model, ids, scored)
        correct += int(((hits | ~scored[:, 1:]).all(dim=1)).sum())
    return correct / len(examples)


# --- recall -----------------------------------------------------------------------------------


def start_token(tokenizer) -> int:
    """The token that opens a probe sequence, a prompt or a training recall row: BOS, else EOS
    (GPT-2 uses one token for both)."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to open its sequences")
    return int(start)


def copy_batch(
    vocab: torch.Tensor, start: int, length: int, n: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """n sequences [start, r_1..r_length, r_1..r_length] of distinct random tokens, and the scored
    mask.

    Scored are r_2..r_length of the second copy: r_1 cannot be known before the copy begins.
    Taught in chapter 8.
    """
    if not 2 <= length <= len(vocab):
        raise ValueError(f"copy length must be in [2, {len(vocab)}], got {length}")
    generator = torch.Generator().manual_seed(seed)
    rows = torch.stack(
        [vocab[torch.randperm(len(vocab), generator=generator)[:length]] for _ in range(n)]
    )
    ids = torch.cat([torch.full((n, 1), start), rows, rows], dim=1)
    scored = torch.zeros_like(ids, dtype=torch.bool)
    scored[:, length + 2 :] = True
    return ids, scored


def mqar_batch(
    vocab: torch.Tensor, start: int, pairs: int, n: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """n multi-query associative recall sequences, and the scored mask (the values after each
    query).

    [start, k_1 v_1 ... k_D v_D, then every key again in a random order, each followed by its
    value]. Keys are distinct and come from the first half of `vocab`, values from the second half
    (the two vocabularies of Zoology's MQAR). Scored: each value in the query part.
    Taught in chapter 8.
    """
    half = len(vocab) // 2
    if not 1 <= pairs <= half:
        raise ValueError(f"pairs must be in [1, {half}], got {pairs}")
    generator = torch.Generator().manual_seed(seed)
    ids = torch.empty(n, 1 + 4 * pairs, dtype=torch.long)
    for row in range(n):
        keys = vocab[torch.randperm(half, generator=generator)[:pairs]]
        values = vocab[half + torch.randint(len(vocab) - half, (pairs,), generator=generator)]
        order = torch.randperm(pairs, generator=generator)
        context = torch.stack([keys, values], dim=1).flatten()
        queries = torch.stack([keys[order], values[order]], dim=1).flatten()
        ids[row] = torch.cat([torch.tensor([start]), context, queries])
    scored = torch.zeros_like(ids, dtype=torch.bool)
    scored[:, 1 + 2 * pairs + 1 :: 2] = True
    return ids, scored


def _curve(model, tokenizer, sizes, key, desc, make_batch, n, batch_size, seed) -> list[dict]:
    """Accuracy on the batch `make_batch(vocab, start, size, n, seed)` of each size:
    [{key, "accuracy"}]."""
    vocab, start = ordinary_tokens(tokenizer), start_token(tokenizer)
    curve = []
    for size in tqdm(sizes, desc=desc, leave=False):
        ids, scored = make_batch(vocab, start, size, n, seed)
        curve.append({key: int(size), "accuracy": _accuracy(model, ids, scored, batch_size)})
    return curve


def copy_curve(
    model: torch.nn.Module,
    tokenizer,
    lengths: Sequence[int],
    n: int = 16,
    batch_size: int = 16,
    seed: int = 0,
) -> list[dict]:
    """Copying accuracy on the second copy, for each sequence length: [{"length", "accuracy"}].
    Taught in chapter 8."""
    return _curve(model, tokenizer, lengths, "length", "copying", copy_batch, n, batch_size, seed)


def mqar_curve(
    model: torch.nn.Module,
    tokenizer,
    pairs: Sequence[int],
    n: int = 16,
    batch_size: int = 16,
    seed: int = 0,
) -> list[dict]:
    """Associative recall accuracy for each number of key-value pairs: [{"pairs", "accuracy"}]."""
    desc = "associative recall"
    return _curve(model, tokenizer, pairs, "pairs", desc, mqar_batch, n, batch_size, seed)
