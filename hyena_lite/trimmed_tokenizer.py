"""GPT-2's byte-level BPE cut to the K most frequent tokens of a corpus, for a small teacher whose
output layer would otherwise be most of its compute.

The kept vocabulary is the 256 byte tokens, <|endoftext|>, and GPT-2 tokens in order of their
frequency in the corpus's train split, each with its merge ancestors (the two tokens whose merge
makes it, recursively), until K tokens are kept; the kept merges are GPT-2's whose result is kept,
in GPT-2's order. A word whose GPT-2 tokens are all kept is tokenised exactly as GPT-2 does (every
merge of its derivation is kept, and no other kept merge applies first); any other word falls back
to other kept pieces, down to bytes, so nothing is unknown. Ids keep GPT-2's order (bytes
first, <|endoftext|> last); `gpt2_ids` maps them back. Built from the offline assets, cached under
assets_dir().
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import GPT2TokenizerFast

from hyena_lite.data import gpt2_tokenizer, tokenize_split, tokenizer_dir
from hyena_lite.paths import assets_dir

EOT = "<|endoftext|>"
ID_MAP = "gpt2_ids.json"  # in the tokenizer's folder: the GPT-2 id of every trimmed id
GPT2_SIZE = 50257


def read_gpt2_bpe(folder: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's vocabulary (token -> id) and merges (in rank order), from vocab.json and
    merges.txt."""
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    return vocab, merges


def merge_parents(
    vocab: dict[str, int], merges: list[tuple[str, str]]
) -> dict[int, tuple[int, int]]:
    """For every token made by a merge, the ids of the two tokens merged (each is made by one
    merge)."""
    parents: dict[int, tuple[int, int]] = {}
    for left, right in merges:
        child = vocab[left + right]
        if child in parents:
            raise ValueError(f"token {left + right!r} is made by two merges; not a BPE merge tree")
        parents[child] = (vocab[left], vocab[right])
    return parents


def kept_ids(
    counts: np.ndarray, vocab: dict[str, int], merges: list[tuple[str, str]], size: int
) -> list[int]:
    """The GPT-2 ids kept in a vocabulary of `size`, sorted: bytes, <|endoftext|>, then the most
    frequent tokens (by `counts`, ties by id) with their merge ancestors while they fit."""
    parents = merge_parents(vocab, merges)
    base = {i for i in vocab.values() if i not in parents}  # the 256 bytes and <|endoftext|>
    if size < len(base):
        raise ValueError(f"a trimmed vocabulary needs at least {len(base)} tokens, got {size}")
    kept = set(base)
    for token in sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], i)):
        if len(kept) == size:
            break
        new, stack = set(), [int(token)]
        while stack:
            t = stack.pop()
            if t not in kept and t not in new:
                new.add(t)
                stack.extend(parents.get(t, ()))
        if len(kept) + len(new) <= size:
            kept |= new
    if len(kept) < size:
        raise ValueError(
            f"the corpus's tokens and their merge ancestors fill only {len(kept)} of {size} "
            f"tokens; choose a vocabulary of at most {len(kept)}"
        )
    return sorted(kept)


def write_trimmed(folder: Path, kept: list[int], vocab: dict[str, int], merges) -> None:
    """vocab.json, merges.txt (GPT-2's format) and the id map of the kept tokens into folder."""
    by_id = {i: t for t, i in vocab.items()}
    new_id = {gpt2: i for i, gpt2 in enumerate(kept)}
    kept_set = set(kept)
    folder.mkdir(parents=True, exist_ok=True)
    trimmed_vocab = {by_id[g]: i for g, i in new_id.items()}
    (folder / "vocab.json").write_text(json.dumps(trimmed_vocab, ensure_ascii=False), "utf-8")
    kept_merges = [f"{a} {b}" for a, b in merges if vocab[a + b] in kept_set]
    (folder / "merges.txt").write_text("\n".join(["#version: 0.2", *kept_merges]) + "\n", "utf-8")
    (folder / ID_MAP).write_text(json.dumps(kept))


def trimmed_dir(size: int, corpus: str) -> Path:
    return assets_dir() / f"gpt2-trimmed-{size}-{corpus}"


def load_trimmed(folder: Path) -> GPT2TokenizerFast:
    """A trimmed tokenizer written by write_trimmed; the pad token is <|endoftext|>, as
    gpt2_tokenizer()'s."""
    return GPT2TokenizerFast.from_pretrained(
        str(folder),
        model_max_length=1024,
        pad_token=EOT,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
    )


def trimmed_gpt2_tokenizer(size: int, corpus: str = "offline") -> GPT2TokenizerFast:
    """GPT-2's tokenizer cut to `size` tokens by their frequency in `corpus`'s train split; built
    once (deterministically) and cached under assets_dir()."""
    folder = trimmed_dir(size, corpus)
    if not (folder / ID_MAP).is_file():
        from hyena_lite.data import load_corpus

        gpt2 = gpt2_tokenizer()
        texts = {"text": list(load_corpus(corpus)["train"]["text"])}
        counts = np.bincount(tokenize_split(texts, gpt2).numpy(), minlength=len(gpt2))
        build_trimmed(folder, counts, size)
    return load_trimmed(folder)


def build_trimmed(folder: Path, counts: np.ndarray, size: int) -> None:
    """Write the trimmed tokenizer of GPT-2 token `counts` into folder, atomically."""
    vocab, merges = read_gpt2_bpe(tokenizer_dir())
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write_trimmed(tmp, kept_ids(counts, vocab, merges, size), vocab, merges)
    digest = hashlib.sha256(np.asarray(counts, np.int64).tobytes()).hexdigest()[:16]
    (tmp / "trim.json").write_text(json.dumps({"size": size, "counts_sha256": digest}))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process built it first: theirs is the same
        shutil.rmtree(tmp, ignore_errors=True)


def gpt2_ids(tokenizer) -> torch.Tensor:
    """For a trimmed tokenizer (as loaded from its cache folder), the GPT-2 id of each of its ids;
    for GPT-2's own, the identity."""
    path = Path(tokenizer.name_or_path) / ID_MAP
    if path.is_file():
        return torch.tensor(json.loads(path.read_text()))
    if len(tokenizer) != GPT2_SIZE:
        raise ValueError(
            f"{tokenizer.name_or_path!r} ({len(tokenizer):,} tokens) is neither GPT-2's tokenizer "
            f"nor a trimmed one with {ID_MAP} beside it; load it with trimmed_gpt2_tokenizer(K)"
        )
    return torch.arange(len(tokenizer))
