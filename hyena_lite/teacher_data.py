"""Distillation data from the teacher itself, and the mix a student is distilled on.

The teacher samples continuations of short prompts (its start token alone, or a few tokens of the
training corpus after it) in batches, at a given temperature and nucleus; the samples are
deduplicated and saved as token shards that a stopped run finds again. A student's batches then mix,
row by row, windows of the packaged corpus, windows of the teacher's samples, synthetic recall
sequences (copying and multi-query associative recall) and windows of a broad modern text
(hyena_lite.broad_text) at given fractions (sequence-level KD, Kim and Rush 2016; recall in the
mix as Zoology suggests).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hyena_lite.distill.recipes import Setup
from hyena_lite.probes import copy_batch, model_device, mqar_batch, start_token

PROMPT_KINDS = ("bos", "corpus", "mixed")


@dataclass(frozen=True)
class SampleSettings:
    """How the teacher samples: `sequences` continuations (rounded up to whole batches) of at most
    `new_tokens` tokens each, prompts of
    kind "bos" (the start token), "corpus" (the start token and `prompt_tokens` corpus tokens at a
    random offset) or "mixed" (half each), at `temperature` and nucleus `top_p`, `batch_size` at a
    time, one shard per batch."""

    sequences: int = 1024
    new_tokens: int = 256
    prompts: str = "mixed"
    prompt_tokens: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prompts not in PROMPT_KINDS:
            raise ValueError(f"prompts={self.prompts!r}; choose one of {', '.join(PROMPT_KINDS)}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError(
                f"temperature={self.temperature}, top_p={self.top_p}: give a temperature > 0 and "
                f"a top_p in (0, 1]"
            )
        if min(self.sequences, self.new_tokens, self.batch_size) < 1 or self.prompt_tokens < 0:
            raise ValueError(
                "sequences, new_tokens and batch_size must be at least 1 and prompt_tokens at "
                "least 0"
            )


def prompts(
    tokenizer, corpus: torch.Tensor, n: int, kind: str, prompt_tokens: int, seed: int
) -> torch.Tensor:
    """n prompts: kind "corpus" the start token then prompt_tokens corpus tokens at a random offset
    ([n, 1 + prompt_tokens]), kind "bos" the start token alone ([n, 1]). (A "mixed" sampling
    alternates the two by shard: see sample_shard.)"""
    start = start_token(tokenizer)
    if kind == "bos" or prompt_tokens == 0:
        return torch.full((n, 1), start)
    rng = np.random.default_rng([seed, 1])
    offsets = torch.from_numpy(rng.integers(0, len(corpus) - prompt_tokens, size=n))
    rows = corpus[offsets[:, None] + torch.arange(prompt_tokens)]
    return torch.cat([torch.full((n, 1), start), rows.long()], dim=1)


@torch.inference_mode()
def sample_shard(
    teacher: nn.Module, tokenizer, corpus: torch.Tensor, settings: SampleSettings, shard: int
) -> list[list[int]]:
    """One batch of samples (the continuations, cut at the first end token; prompts of kind
    "corpus" kept in front of them), seeded by (settings.seed, shard) so that a shard is the same
    whenever it is made."""
    kind = settings.prompts
    if kind == "mixed":
        kind = "bos" if shard % 2 == 0 else "corpus"
    batch = prompts(
        tokenizer, corpus, settings.batch_size, kind, settings.prompt_tokens, settings.seed + shard
    )
    torch.manual_seed(settings.seed * 1_000_003 + shard)
    eos = tokenizer.eos_token_id
    out = teacher.generate(
        input_ids=batch.to(model_device(teacher)),
        attention_mask=torch.ones_like(batch).to(model_device(teacher)),
        do_sample=True,
        temperature=settings.temperature,
        top_p=settings.top_p,
        top_k=0,
        max_new_tokens=settings.new_tokens,
        pad_token_id=eos,
        eos_token_id=eos,
    ).cpu()
    samples = []
    for row in out[:, 1:].tolist():  # without the start token
        if eos in row[batch.shape[1] - 1 :]:
            row = row[: row.index(eos, batch.shape[1] - 1)]
        samples.append(row)
    return samples


def deduplicate(samples: list[list[int]], prefix: int, min_tokens: int) -> list[list[int]]:
    """The samples in order without those shorter than min_tokens and those whose first `prefix`
    tokens an earlier sample already began with (near-copies that low temperatures produce)."""
    seen, kept = set(), []
    for sample in samples:
        key = tuple(sample[:prefix])
        if len(sample) >= min_tokens and key not in seen:
            seen.add(key)
            kept.append(sample)
    return kept


def teacher_samples(
    teacher: nn.Module,
    tokenizer,
    corpus: torch.Tensor,
    settings: SampleSettings,
    folder: str | Path,
    progress: bool = True,
) -> dict:
    """Sample settings.sequences continuations into `folder` (shard_NNNNN.pt, one per batch, and
    samples.json with the settings); shards already there are kept, so a stopped run resumes.
    Returns samples.json's content (settings and shard names)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "samples.json"
    wanted = dataclasses.asdict(settings)
    if manifest.is_file() and json.loads(manifest.read_text())["settings"] != wanted:
        raise ValueError(
            f"{folder} holds samples of other settings ({manifest}); give another folder or "
            f"remove it"
        )
    shards = math.ceil(settings.sequences / settings.batch_size)
    names = [f"shard_{i:05d}.pt" for i in range(shards)]
    for i, name in enumerate(tqdm(names, desc="teacher samples", disable=not progress)):
        if not (folder / name).is_file():
            rows = sample_shard(teacher, tokenizer, corpus, settings, i)
            tmp = folder / f"{name}.tmp"
            torch.save([torch.tensor(r, dtype=torch.int32) for r in rows], tmp)
            tmp.replace(folder / name)
    content = {"settings": wanted, "shards": names}
    manifest.write_text(json.dumps(content, indent=1))
    return content


def load_samples(
    folder: str | Path, eos: int, prefix: int = 32, min_tokens: int = 16
) -> tuple[torch.Tensor, dict]:
    """The deduplicated samples of `folder` as one 1-D int64 tensor, each followed by `eos` (like
    hyena_lite.data.tokenize_split), and their statistics: sequences made and kept, tokens, and the
    share of distinct 4-grams (a low one says the samples repeat themselves)."""
    folder = Path(folder)
    manifest = folder / "samples.json"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest} is missing: sample the teacher first (teacher_samples)"
        )
    names = json.loads(manifest.read_text())["shards"]
    made = [r.tolist() for name in names for r in torch.load(folder / name)]
    kept = deduplicate(made, prefix, min_tokens)
    if not kept:
        raise ValueError(
            f"none of the {len(made)} samples in {folder} is kept (each shorter than "
            f"{min_tokens} tokens or a duplicate): sample longer continuations or at a higher "
            f"temperature"
        )
    grams = [tuple(s[i : i + 4]) for s in kept for i in range(len(s) - 3)]
    tokens = torch.tensor([t for s in kept for t in [*s, eos]], dtype=torch.long)
    return tokens, {
        "sequences_made": len(made),
        "sequences_kept": len(kept),
        "tokens": len(tokens),
        "distinct_4grams": len(set(grams)) / max(1, len(grams)),
    }


def recall_row(vocab: torch.Tensor, start: int, seq_len: int, seed: int) -> torch.Tensor:
    """A training sequence of seq_len tokens made of copy and associative-recall segments (the
    probes' own formats, hyena_lite.probes), of random sizes, one after another."""
    rng = np.random.default_rng([seed, 2])
    pieces, filled = [], 0
    while filled < seq_len:
        piece_seed = int(rng.integers(2**31))
        if rng.random() < 0.5:
            length = int(rng.integers(8, max(9, min(128, seq_len // 2))))
            ids, _ = copy_batch(vocab, start, min(length, len(vocab)), 1, piece_seed)
        else:
            pairs = int(rng.integers(4, max(5, min(64, seq_len // 4))))
            ids, _ = mqar_batch(vocab, start, min(pairs, len(vocab) // 2), 1, piece_seed)
        pieces.append(ids[0])
        filled += ids.shape[1]
    return torch.cat(pieces)[:seq_len]


def mixed_batches(
    corpus: torch.Tensor,
    samples: torch.Tensor | None,
    sample_fraction: float,
    recall_fraction: float,
    vocab: torch.Tensor,
    start: int,
    batch_size: int,
    seq_len: int,
    seed: int = 0,
    start_step: int = 0,
    *,
    broad: torch.Tensor | None = None,
    broad_fraction: float = 0.0,
) -> Iterator[torch.Tensor]:
    """Endless [batch_size, seq_len] batches whose rows are, each with its fraction, a window of the
    teacher's samples, a recall sequence, a window of the broad text (hyena_lite.broad_text), or a
    window of the corpus (the rest). Batch k depends only on (seed, k), so start_step=k resumes
    exactly; with every fraction 0 the rows are the corpus windows of
    hyena_lite.data.iterate_batches."""
    fractions = (sample_fraction, recall_fraction, broad_fraction)
    if min(fractions) < 0 or sum(fractions) > 1 + 1e-9:  # rounding of scaled shares allowed
        raise ValueError(
            f"sample_fraction={sample_fraction}, recall_fraction={recall_fraction} and "
            f"broad_fraction={broad_fraction} must be >= 0 and sum to at most 1"
        )
    if broad_fraction > 0 and (broad is None or len(broad) < seq_len):
        raise ValueError(
            f"a broad fraction of {broad_fraction} needs at least one window ({seq_len} tokens) "
            f"of broad text; build it with `python -m hyena_lite data` or give broad_fraction=0"
        )
    if sample_fraction > 0 and (samples is None or len(samples) < seq_len):
        raise ValueError(
            f"a sample fraction of {sample_fraction} needs at least one window ({seq_len} tokens) "
            f"of teacher samples; sample more or give sample_fraction=0"
        )
    from hyena_lite.data import iterate_batches

    step = start_step
    for corpus_batch in iterate_batches(corpus, batch_size, seq_len, seed, start_step=start_step):
        rng = np.random.default_rng([seed, step, 3])
        draws = rng.random(batch_size)
        for row, draw in enumerate(draws):
            if draw < sample_fraction:
                offset = int(rng.integers(0, len(samples) - seq_len + 1))
                corpus_batch[row] = samples[offset : offset + seq_len]
            elif draw < sample_fraction + recall_fraction:
                corpus_batch[row] = recall_row(vocab, start, seq_len, int(rng.integers(2**31)))
            elif draw < sum(fractions):
                offset = int(rng.integers(0, len(broad) - seq_len + 1))
                corpus_batch[row] = broad[offset : offset + seq_len]
        yield corpus_batch
        step += 1


@dataclass
class MixedSetup(Setup):
    """A distillation setup whose batches mix the corpus (train_tokens) with the teacher's samples
    and recall sequences (mixed_batches); the calibration batch stays the corpus's first."""

    samples: torch.Tensor | None = None
    sample_fraction: float = 0.0
    recall_fraction: float = 0.0
    broad: torch.Tensor | None = None
    broad_fraction: float = 0.0

    @classmethod
    def from_setup(cls, setup: Setup, **mix: Any) -> MixedSetup:
        """`setup` with its batches mixed as `mix` says (samples, sample_fraction,
        recall_fraction); every other field kept."""
        return cls(**{f.name: getattr(setup, f.name) for f in dataclasses.fields(setup)}, **mix)

    def batches_fn(self):
        from hyena_lite.data import ordinary_tokens

        c, vocab, start = self.config, ordinary_tokens(self.tokenizer), start_token(self.tokenizer)
        return lambda first: mixed_batches(
            self.train_tokens,
            self.samples,
            self.sample_fraction,
            self.recall_fraction,
            vocab,
            start,
            c.batch_size,
            c.seq_len,
            c.seed,
            start_step=first,
            broad=self.broad,
            broad_fraction=self.broad_fraction,
        )

    def with_recall(self, recall_fraction: float) -> MixedSetup:
        """This setup with recall rows at `recall_fraction` and every other source (corpus, teacher
        samples, broad text) scaled to keep its share of the rest: more recall rows displace each
        source alike, not the corpus (the rest) alone."""
        if not 0.0 <= recall_fraction <= 1.0:
            raise ValueError(f"recall_fraction must be in [0, 1], got {recall_fraction}")
        rest = 1.0 - self.recall_fraction
        scale = (1.0 - recall_fraction) / rest if rest > 0 else 0.0
        return dataclasses.replace(
            self,
            recall_fraction=recall_fraction,
            sample_fraction=self.sample_fraction * scale,
            broad_fraction=self.broad_fraction * scale,
        )

    def data_mix(self) -> dict:
        """The mix as a results file reports it."""
        corpus = 1.0 - self.sample_fraction - self.recall_fraction - self.broad_fraction
        mix = {
            "corpus": corpus,
            "teacher_samples": self.sample_fraction,
            "recall": self.recall_fraction,
        }
        return mix | ({"broad": self.broad_fraction} if self.broad_fraction else {})

    def passes(self, tokens: int) -> dict[str, float]:
        """How many times `tokens` tokens of this mix go over each finite source (corpus, teacher
        samples, broad text): a source gone over many times can be memorised rather than learnt."""
        sizes = {"corpus": self.train_tokens, "teacher_samples": self.samples, "broad": self.broad}
        mix = self.data_mix()
        return {
            name: tokens * mix[name] / len(source)
            for name, source in sizes.items()
            if source is not None and mix.get(name, 0) > 0
        }
