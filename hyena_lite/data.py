"""Tokenizer, corpora and batches: everything the models eat.

The offline assets (GPT-2 tokenizer files, the public-domain corpus) are built by
`python -m hyena_lite data` (hyena_lite.assets); this module only reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import GPT2TokenizerFast, PreTrainedTokenizerBase

from hyena_lite import hub
from hyena_lite.paths import assets_dir

if (
    TYPE_CHECKING
):  # imported where used: batches and windows need no `datasets` (a GPU machine may lack it)
    import datasets

DOMAINS = ("shakespeare", "austen", "bible")
SPLITS = ("train", "validation", "test")
HELD_OUT_FRACTION = 0.05  # of each domain's bytes, for validation and for test
BUILD_HINT = "build the offline assets with `python -m hyena_lite data` (or `make assets`)"
WIKITEXT = ("Salesforce/wikitext", "wikitext-103-raw-v1")


def tokenizer_dir() -> Path:
    """The folder holding GPT-2's vocab.json and merges.txt."""
    return assets_dir() / "gpt2-tokenizer"


def corpus_dir() -> Path:
    """The folder of the offline corpus: manifest.json and one text file per document."""
    return assets_dir() / "corpus"


def gpt2_tokenizer() -> GPT2TokenizerFast:
    """OpenAI's GPT-2 byte-level BPE (50,257 tokens); the pad token is the eos token <|endoftext|>.

    GPT-2 has no pad token: padding with eos is the usual convention, so batches that pad must
    pass an attention mask (and mask padded labels with -100).
    """
    folder = tokenizer_dir()
    missing = [n for n in ("vocab.json", "merges.txt") if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"GPT-2 tokenizer files {missing} are missing from {folder}: {BUILD_HINT}"
        )
    return GPT2TokenizerFast.from_pretrained(
        str(folder), model_max_length=1024, pad_token="<|endoftext|>"
    )


def _documents_dataset(rows: list[dict[str, str]]) -> datasets.Dataset:
    import datasets

    features = datasets.Features({k: datasets.Value("string") for k in ("text", "domain", "title")})
    return datasets.Dataset.from_list(rows, features=features)


def read_manifest() -> list[dict]:
    """The corpus documents in canonical order: domain, title, file (relative to
    corpus_dir()), bytes."""
    path = corpus_dir() / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"the offline corpus is not built ({path} is missing): {BUILD_HINT}"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def split_documents(docs: list[dict], fraction: float = HELD_OUT_FRACTION) -> dict[str, list[dict]]:
    """Assign whole documents to train/validation/test, deterministically, within each domain.

    Documents are visited in an order fixed by a hash of their title; test, then validation,
    takes every document that keeps it within `fraction` of the domain's bytes, or the smallest
    remaining one when none fits (a novel is more than 5% of Austen). The rest is train.
    """
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for domain in dict.fromkeys(d["domain"] for d in docs):
        mine = [d for d in docs if d["domain"] == domain]
        budget = fraction * sum(d["bytes"] for d in mine)
        left = sorted(
            mine, key=lambda d: hashlib.sha256(f"{domain}/{d['title']}".encode()).hexdigest()
        )
        for name in ("test", "validation"):
            taken = []
            for d in left:
                if sum(t["bytes"] for t in taken) + d["bytes"] <= budget:
                    taken.append(d)
            if not taken:
                taken = [min(left, key=lambda d: d["bytes"])]
            left = [d for d in left if d not in taken]
            splits[name] += taken
        splits["train"] += left
    order = {id(d): i for i, d in enumerate(docs)}
    return {s: sorted(v, key=lambda d: order[id(d)]) for s, v in splits.items()}


def _wikitext_documents(lines: list[str]) -> list[dict[str, str]]:
    """WikiText rows are lines; an article starts at a ` = Title = ` line (one pair of '=')."""
    docs: list[dict[str, str]] = []
    for line in lines:
        head = line.strip()
        if head.startswith("= ") and head.endswith(" =") and not head.startswith("= ="):
            docs.append({"text": "", "domain": "wikitext", "title": head.strip("= ").strip()})
        if docs:
            docs[-1]["text"] += line
    return [d for d in docs if d["text"].strip()]


def load_corpus(name: str = "offline") -> datasets.DatasetDict:
    """train/validation/test documents with columns text, domain and title.

    "offline": Shakespeare, Austen and the King James Bible from the built assets (see
    split_documents). "wikitext-103": WikiText-103 (raw) from the Hugging Face hub, one row per
    article; it fails at once when the hub is unreachable.
    """
    import datasets

    if name == "offline":
        from hyena_lite.assets import read_checksums, verified_text

        docs, checksums = read_manifest(), read_checksums()
        parts = split_documents(docs)
        prefix = corpus_dir().name
        return datasets.DatasetDict(  # each file checked against its sha256: a damaged one is named
            {
                s: _documents_dataset(
                    [
                        {
                            "text": verified_text(f"{prefix}/{d['file']}", checksums),
                            "domain": d["domain"],
                            "title": d["title"],
                        }
                        for d in parts[s]
                    ]
                )
                for s in SPLITS
            }
        )
    if name == "wikitext-103":
        if not hub.reachable():
            raise ConnectionError(
                f"WikiText-103 ({WIKITEXT[0]}, {WIKITEXT[1]}) comes from the Hugging Face hub, "
                f"which is unreachable from here ({hub.describe()}). "
                "Use the offline corpus instead: load_corpus('offline') (Shakespeare, Austen, the "
                "King James Bible), e.g. HYENA_BOOK_PROFILE=cpu."
            )
        raw = datasets.load_dataset(*WIKITEXT)
        return datasets.DatasetDict(
            {s: _documents_dataset(_wikitext_documents(raw[s]["text"])) for s in SPLITS}
        )
    raise ValueError(f"unknown corpus {name!r}; choose 'offline' or 'wikitext-103'")


def load_text(path: str | os.PathLike) -> datasets.Dataset:
    """Any UTF-8 text file as a one-document corpus (columns text, domain = the file's
    stem, title)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; give the path of a UTF-8 text file")
    if not path.is_file():
        raise IsADirectoryError(f"{path} is not a regular file (a folder?); give a UTF-8 text file")
    data = path.read_bytes()
    if not data.strip():
        raise ValueError(
            f"{path} is empty ({len(data)} bytes, no text): nothing to train or evaluate on"
        )
    if (nul := data.find(b"\0")) >= 0:
        raise ValueError(
            f"{path} looks binary, not text (a NUL byte at offset {nul}); give a UTF-8 text file"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 (byte {data[err.start]:#04x} at offset {err.start} is invalid); "
            "convert it, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    return _documents_dataset([{"text": text, "domain": path.stem, "title": path.name}])


def _cache_key(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> str:
    digest = hashlib.sha256(f"{tokenizer.name_or_path}|{len(tokenizer)}|{len(texts)}".encode())
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:32]


def _document_tokens(
    split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, cache: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The tokens of every document, flat, and each document's length; cached on disk."""
    texts = list(split["text"])
    path = assets_dir() / "tokens" / f"{_cache_key(texts, tokenizer)}.npz"
    if cache and path.is_file():
        with np.load(path) as saved:
            return saved["tokens"], saved["lengths"]
    pieces = []
    with tqdm(
        total=sum(len(t) for t in texts),
        unit="char",
        unit_scale=True,
        desc="tokenizing",
        leave=False,
    ) as bar:
        for start in range(0, len(texts), 64):
            chunk = texts[start : start + 64]
            pieces += tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]
            bar.update(sum(len(t) for t in chunk))
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    tokens = np.fromiter((t for p in pieces for t in p), dtype=np.int32, count=int(lengths.sum()))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, tokens=tokens, lengths=lengths)
        tmp.replace(path)
    return tokens, lengths


def _join_with_eos(
    tokens: np.ndarray, lengths: np.ndarray, keep: np.ndarray, eos: int
) -> torch.Tensor:
    ends = np.cumsum(lengths)
    parts = []
    for i in np.flatnonzero(keep):
        parts += [tokens[ends[i] - lengths[i] : ends[i]], np.array([eos], dtype=np.int32)]
    return torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, np.int32)).long()


def ordinary_tokens(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """The ids of every token that is not a special token, for random sequences."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special])


def _eos_id(tokenizer: PreTrainedTokenizerBase) -> int:
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"tokenizer {tokenizer.name_or_path!r} has no eos token to separate documents"
        )
    return int(tokenizer.eos_token_id)


def tokenize_split(
    split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, cache: bool = True
) -> torch.Tensor:
    """All documents' tokens as one 1-D int64 tensor, each document followed by the eos token.

    Cached under assets_dir()/tokens, keyed by the tokenizer's name_or_path and size and a hash
    of the texts, so a second call costs a file read.
    """
    tokens, lengths = _document_tokens(split, tokenizer, cache)
    return _join_with_eos(tokens, lengths, np.ones(len(lengths), bool), _eos_id(tokenizer))


def tokens_by_domain(
    split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase
) -> dict[str, torch.Tensor]:
    """Like tokenize_split, one tensor per domain (in order of first appearance); shares
    its cache."""
    tokens, lengths = _document_tokens(split, tokenizer, cache=True)
    domains = np.array(split["domain"])
    eos = _eos_id(tokenizer)
    return {
        d: _join_with_eos(tokens, lengths, domains == d, eos)
        for d in dict.fromkeys(split["domain"])
    }


def _check_windows(tokens: torch.Tensor, seq_len: int) -> None:
    if tokens.dim() != 1:
        raise ValueError(f"expected a 1-D tensor of token ids, got shape {tuple(tokens.shape)}")
    if seq_len < 1 or len(tokens) < seq_len:
        raise ValueError(
            f"{len(tokens)} tokens cannot fill one window of seq_len={seq_len}; "
            "use a shorter seq_len or more text"
        )


def iterate_batches(
    tokens: torch.Tensor,
    batch_size: int,
    seq_len: int,
    seed: int = 0,
    start_step: int = 0,
    steps: int | None = None,
) -> Iterator[torch.Tensor]:
    """Training batches: LongTensor [batch_size, seq_len] windows at random offsets.

    Batch k depends only on (seed, k): its offsets are drawn from a generator seeded with
    [seed, k]. So start_step=k resumes exactly where step k of an earlier run was. Use the batch
    as both input_ids and labels (Hugging Face models shift the labels). steps=None: endless.
    """
    _check_windows(tokens, seq_len)
    step = start_step
    while steps is None or step < start_step + steps:
        rng = np.random.default_rng([seed, step])
        offsets = torch.from_numpy(rng.integers(0, len(tokens) - seq_len + 1, size=batch_size))
        yield tokens[offsets[:, None] + torch.arange(seq_len)].long()
        step += 1


def eval_windows(tokens: torch.Tensor, seq_len: int, max_tokens: int | None = None) -> torch.Tensor:
    """Consecutive non-overlapping windows [N, seq_len] from the start (at most
    max_tokens tokens)."""
    _check_windows(tokens, seq_len)
    limit = len(tokens) if not max_tokens else min(len(tokens), max_tokens)
    n = max(limit // seq_len, 1)
    return tokens[: n * seq_len].reshape(n, seq_len).long()
