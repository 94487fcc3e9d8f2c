"""The mini GPT-2 teacher that the book pre-trains itself: GPT-2's architecture at a profile's size,
the real GPT-2 tokenizer or GPT-2's cut to the corpus's most frequent tokens (teacher_vocab), the
profile's corpus (with repeated-span sequences mixed in where the
profile's teacher_copy_fraction says so), checkpointed as it goes and cached under
artifacts_dir()/teachers. `hyena_lite.teachers.load_teacher("mini-gpt2", profile)` returns it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedModel, PreTrainedTokenizerBase

from hyena_lite.data import (
    eval_windows,
    gpt2_tokenizer,
    iterate_batches,
    load_corpus,
    ordinary_tokens,
    tokenize_split,
)
from hyena_lite.losses import validation_loss
from hyena_lite.paths import artifacts_dir
from hyena_lite.profiles import Profile
from hyena_lite.training import TrainConfig, TrainResult, cpu_bf16_is_fast, train
from hyena_lite.trimmed_tokenizer import trimmed_dir, trimmed_gpt2_tokenizer

MINI_CONTEXT = (
    1024  # the mini teacher's position table, as GPT-2's; it trains on profile.seq_len of it
)
MIN_SPAN = 4  # shortest repeated span in the mini teacher's induction sequences
GPT2_VOCAB = 50257


def with_pad_token(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> tuple[PreTrainedModel, Any]:
    """Give a tokenizer without a pad token its eos token as pad (and tell generate())."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    name_causal_lm_loss(model)
    return model, tokenizer


def name_causal_lm_loss(model: PreTrainedModel) -> None:
    """Name the causal-LM loss where transformers cannot infer it from the class
    name (GPT2LMHeadModel).

    Without it, the first `labels=` call logs a warning to stderr, which the book build treats as
    an error.
    """
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"


def teacher_tokenizer(profile: Profile) -> PreTrainedTokenizerBase:
    """The mini teacher's tokenizer: GPT-2's, or GPT-2's cut to profile.teacher_vocab tokens by
    their frequency in the profile's corpus (built once, cached)."""
    if profile.teacher_vocab:
        return trimmed_gpt2_tokenizer(profile.teacher_vocab, profile.corpus)
    return gpt2_tokenizer()


def mini_gpt2_config(profile: Profile, vocab_size: int | None = None) -> GPT2Config:
    """GPT-2's architecture at the profile's size (teacher_layers, teacher_width, teacher_heads,
    teacher_vocab tokens unless `vocab_size` says, head tied to the embedding or not as
    teacher_tied), no dropout."""
    vocab_size = vocab_size or profile.teacher_vocab or GPT2_VOCAB
    return GPT2Config(
        vocab_size=vocab_size,
        tie_word_embeddings=profile.teacher_tied,
        n_positions=max(MINI_CONTEXT, profile.seq_len),
        n_embd=profile.teacher_width,
        n_layer=profile.teacher_layers,
        n_head=profile.teacher_heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=vocab_size - 1,
        eos_token_id=vocab_size - 1,
    )


def mini_gpt2_train_config(profile: Profile) -> TrainConfig:
    """The pre-training run: teacher_tokens at teacher_lr, batch_size x seq_len tokens per
    step, seeded, with a checkpoint every 5% of the steps (so that a killed run loses little
    when it resumes)."""
    steps = max(1, profile.teacher_tokens // (profile.batch_size * profile.seq_len))
    cpu = profile.device == "cpu" or not torch.cuda.is_available()
    bf16 = profile.teacher_cpu_bf16 and cpu and cpu_bf16_is_fast()
    return TrainConfig(
        steps=steps,
        lr=profile.teacher_lr,
        warmup=max(1, steps // 20),
        decay_fraction=profile.teacher_decay_fraction,
        mixed_precision="bf16" if bf16 else "auto",
        weight_decay=0.1,
        batch_size=profile.batch_size,
        seq_len=profile.seq_len,
        seed=profile.seed,
        device=profile.device,
        eval_every=max(1, steps // 5),
        save_every=max(1, steps // 20),
        tag="mini-gpt2 pre-training",
    )


def _copy_mix(profile: Profile) -> dict[str, float]:
    """The induction-data fields of a profile, checked; empty when it pre-trains on plain
    corpus windows."""
    mix = {
        "copy_fraction": profile.teacher_copy_fraction,
        "copy_random": profile.teacher_copy_random,
    }
    for name, value in mix.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"teacher_{name} must be a fraction in [0, 1], got {value}")
    if profile.teacher_copy_fraction and profile.seq_len < 2 * MIN_SPAN + 1:
        raise ValueError(
            f"induction sequences need seq_len >= {2 * MIN_SPAN + 1}, got {profile.seq_len}; "
            f"set teacher_copy_fraction=0 or use longer sequences"
        )
    return mix if profile.teacher_copy_fraction else {}


def mini_gpt2_dir(profile: Profile) -> Path:
    """The cache folder of the mini teacher, keyed by its config, training run, corpus and
    induction data."""
    model = {
        k: v for k, v in mini_gpt2_config(profile).to_dict().items() if k != "transformers_version"
    }
    identity = {
        "model": model,
        "train": mini_gpt2_train_config(profile).identity(),
        "corpus": profile.corpus,
    }
    if mix := _copy_mix(
        profile
    ):  # absent without induction data: the folders of earlier teachers stay valid
        identity["copy_mix"] = mix
    if profile.teacher_vocab:  # likewise absent with GPT-2's own tokenizer
        identity["tokenizer"] = trimmed_dir(profile.teacher_vocab, profile.corpus).name
    key = json.dumps(identity, sort_keys=True)
    return (
        artifacts_dir() / "teachers" / f"mini-gpt2-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    )


def pretraining_batches(
    train_tokens: torch.Tensor,
    profile: Profile,
    vocab: torch.Tensor,
    start_token: int,
    start: int = 0,
) -> Iterator[torch.Tensor]:
    """The mini teacher's batches [batch_size, seq_len] from batch `start` on; batch k depends only
    on (seed, k).

    Corpus windows at random offsets, of which a fraction teacher_copy_fraction is replaced by an
    induction sequence: [start_token, s, s, s, ...] cut to seq_len, a span s of MIN_SPAN to
    seq_len // 2 tokens repeated, taken from the corpus or (a fraction teacher_copy_random of
    them) random distinct tokens of `vocab`. Predicting a repeat needs the model to look back:
    induction heads.
    """
    mix = _copy_mix(profile)
    for step, batch in enumerate(
        iterate_batches(
            train_tokens, profile.batch_size, profile.seq_len, seed=profile.seed, start_step=start
        ),
        start=start,
    ):
        if mix:
            rng = np.random.default_rng(
                [profile.seed, step, 1]
            )  # separate from the windows' generator
            for row in np.flatnonzero(rng.random(len(batch)) < profile.teacher_copy_fraction):
                batch[row] = _induction_sequence(train_tokens, profile, vocab, start_token, rng)
        yield batch


def _induction_sequence(
    train_tokens: torch.Tensor,
    profile: Profile,
    vocab: torch.Tensor,
    start_token: int,
    rng: np.random.Generator,
) -> torch.Tensor:
    """[start_token, s, s, ...] of seq_len tokens, s a corpus span or random distinct tokens
    of vocab."""
    length = int(rng.integers(MIN_SPAN, profile.seq_len // 2 + 1))
    if rng.random() < profile.teacher_copy_random:
        span = vocab[torch.from_numpy(rng.choice(len(vocab), size=length, replace=False))]
    else:
        offset = int(rng.integers(0, len(train_tokens) - length + 1))
        span = train_tokens[offset : offset + length].long()
    repeats = -(-(profile.seq_len - 1) // length)
    return torch.cat([torch.tensor([start_token]), span.repeat(repeats)[: profile.seq_len - 1]])


def _lm_loss(model: torch.nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    return model(input_ids=batch, labels=batch).loss, {}


def mini_gpt2(
    profile: Profile, progress: bool = True
) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerBase]:
    """The profile's mini GPT-2 teacher: loaded from its cache, else pre-trained now (resumable)
    and cached."""
    folder = mini_gpt2_dir(profile)
    if (folder / "model" / "config.json").is_file():
        return with_pad_token(
            GPT2LMHeadModel.from_pretrained(folder / "model").eval(), teacher_tokenizer(profile)
        )
    return pretrain_mini_gpt2(profile, folder, progress)


def pretrain_mini_gpt2(
    profile: Profile, folder: Path, progress: bool = True, **train_changes: Any
) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerBase]:
    """Pre-train the profile's mini GPT-2 into folder/model (checkpoints in folder/run: a
    killed or stopped run resumes where it was); `train_changes` override fields of its
    TrainConfig (an experiment's)."""
    tokenizer = teacher_tokenizer(profile)
    corpus = load_corpus(profile.corpus)
    train_tokens = tokenize_split(corpus["train"], tokenizer)
    val_windows = eval_windows(
        tokenize_split(corpus["validation"], tokenizer),
        profile.seq_len,
        max(profile.seq_len, profile.eval_tokens // 4),
    )
    config = dataclasses.replace(
        mini_gpt2_train_config(profile),
        out_dir=str(folder / "run"),
        progress=progress,
        **train_changes,
    )
    torch.manual_seed(profile.seed)
    model = GPT2LMHeadModel(mini_gpt2_config(profile, len(tokenizer)))
    name_causal_lm_loss(model)  # before training, whose first labels= call would warn otherwise
    vocab = ordinary_tokens(tokenizer)

    def batches(start: int):
        return pretraining_batches(train_tokens, profile, vocab, tokenizer.eos_token_id, start)

    result = train(
        model,
        _lm_loss,
        batches,
        config,
        eval_fn=lambda m: {"val_loss": validation_loss(m, val_windows)},
    )
    model = model.cpu().eval()
    with_pad_token(model, tokenizer)
    tmp = folder / "model.tmp"
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "summary.json").write_text(json.dumps(_summary(model, result), indent=1))
    os.replace(tmp, folder / "model")
    return model, tokenizer


def _summary(model: PreTrainedModel, result: TrainResult) -> dict[str, Any]:
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokens": result.tokens,
        "train_seconds": result.wall_seconds,
        "final_train_loss": result.losses[-1],
        "final_val_loss": result.evals[-1]["val_loss"] if result.evals else None,
    }


def mini_gpt2_log(profile: Profile) -> dict[str, Any]:
    """The pre-training log of the profile's mini teacher: per-step records and
    validations (log.json)."""
    path = mini_gpt2_dir(profile) / "run" / "log.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no pre-training log at {path}: run load_teacher('mini-gpt2', profile) first"
        )
    return json.loads(path.read_text())
