"""Variants of the cpu profile's mini GPT-2 teacher, trained and probed, to choose its pre-training
by evidence.

Each variant is the cpu profile (seq_len 256, 4 layers, width 128, 700K tokens, ...) with a few
fields changed: the fraction of induction sequences in pre-training (teacher_copy_fraction,
teacher_copy_random), the learning rate, the batch size, the tokens. Each is pre-trained by the
library (hyena_lite.teachers.pretrain_mini_gpt2, in float32 as on a CPU) and scored: validation
perplexity per domain against the unigram model's, copying accuracy at lengths 32/64/128
(hyena_lite.probes.copy_curve), and the length curve (mean NLL per bin of positions over validation
windows of seq_len tokens, hyena_lite.evaluate.length_curve). Runs on CUDA when present, else on the
CPU (only sensible with --tiny, a dry run at toy sizes). From the repository root, with the offline
assets built (`make assets`):

    python scripts/cpu_teacher_sweep.py --out OUT.json                # every variant
    python scripts/cpu_teacher_sweep.py --out OUT.json --variants baseline,copy25
    python scripts/cpu_teacher_sweep.py --out /tmp/dry.json --tiny  # a one-minute dry run on a CPU

Resumable: OUT.json is rewritten after every variant and a variant already in it is skipped; a
variant's training checkpoints in --work (default: beside OUT.json) and resumes. A variant that
fails is recorded with its error and the others still run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if (
    not sys.stderr.isatty()
):  # in a log file, per-batch progress bars are noise: the script prints its own lines
    os.environ.setdefault("TQDM_DISABLE", "1")

import torch
from transformers import GPT2LMHeadModel

from hyena_lite import evaluate, probes, teachers
from hyena_lite.data import load_corpus, tokenize_split
from hyena_lite.mini_teacher import teacher_tokenizer
from hyena_lite.profiles import Profile, get_profile
from hyena_lite.provenance import provenance
from hyena_lite.training import TrainingStopped

COPY_LENGTHS = (32, 64, 128)
# the cpu profile's teacher as this sweep studied it: GPT-2's whole vocabulary, tied, 700K tokens
# (scripts/cpu_vocab_sweep.py studies the trimmed vocabulary that the profile has since)
CPU = get_profile("cpu").replace(teacher_vocab=0, teacher_tied=True, teacher_tokens=700_000)
# name -> changes to the cpu profile, in the order they run (the most telling first, so that a
# partial sweep already answers). "baseline" is today's cpu teacher (170 steps of 16 x 256 tokens);
# the others add induction data (copy: teacher_copy_fraction in %, rand: teacher_copy_random in %)
# and change one or two settings at a time. Smaller batches give more optimiser steps for the same
# tokens, which induction heads may need (a tiny teacher, 2 layers of width 64, had not formed them
# after 1,200 steps of 2 sequences, half of them repeats). Budgets stay at or below the baseline's
# tokens (a CPU's time is about proportional to them), except the variants marked "over budget",
# for reference.
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "copy25-rand50": {"teacher_copy_fraction": 0.25, "teacher_copy_random": 0.5},
    "copy25-rand50-b4": {
        "teacher_copy_fraction": 0.25,
        "teacher_copy_random": 0.5,
        "batch_size": 4,
    },
    "copy50-rand100-b4": {
        "teacher_copy_fraction": 0.5,
        "teacher_copy_random": 1.0,
        "batch_size": 4,
    },
    "copy25-b4": {"teacher_copy_fraction": 0.25, "batch_size": 4},
    "baseline-b4": {"batch_size": 4},
    "copy25-rand50-b8": {
        "teacher_copy_fraction": 0.25,
        "teacher_copy_random": 0.5,
        "batch_size": 8,
    },
    "copy25-rand50-b2": {
        "teacher_copy_fraction": 0.25,
        "teacher_copy_random": 0.5,
        "batch_size": 2,
    },
    "copy10-rand50-b4": {
        "teacher_copy_fraction": 0.10,
        "teacher_copy_random": 0.5,
        "batch_size": 4,
    },
    "copy50-rand50-b4": {
        "teacher_copy_fraction": 0.50,
        "teacher_copy_random": 0.5,
        "batch_size": 4,
    },
    "copy25-rand100-b4": {
        "teacher_copy_fraction": 0.25,
        "teacher_copy_random": 1.0,
        "batch_size": 4,
    },
    "copy25-rand50-b4-lr1e-3": {
        "teacher_copy_fraction": 0.25,
        "teacher_copy_random": 0.5,
        "batch_size": 4,
        "teacher_lr": 1e-3,
    },
    "copy25-rand50-b4-lr4e-3": {
        "teacher_copy_fraction": 0.25,
        "teacher_copy_random": 0.5,
        "batch_size": 4,
        "teacher_lr": 4e-3,
    },
    "copy25-rand50-b4-350k": {
        "teacher_copy_fraction": 0.25,
        "teacher_copy_random": 0.5,
        "batch_size": 4,
        "teacher_tokens": 350_000,
    },
    "copy25-rand50-b4-2heads": {
        "teacher_copy_fraction": 0.25,
        "teacher_copy_random": 0.5,
        "batch_size": 4,
        "teacher_heads": 2,
    },
    "copy25": {"teacher_copy_fraction": 0.25},
    "copy25-rand50-b4-lr8e-3": {
        "teacher_copy_fraction": 0.25,
        "teacher_copy_random": 0.5,
        "batch_size": 4,
        "teacher_lr": 8e-3,
    },
    "copy25-rand50-b4-1400k": {
        "teacher_copy_fraction": 0.25,
        "teacher_copy_random": 0.5,
        "batch_size": 4,
        "teacher_tokens": 1_400_000,
    },  # over budget: twice today's tokens
    "copy50-rand50-b4-2800k": {
        "teacher_copy_fraction": 0.5,
        "teacher_copy_random": 0.5,
        "batch_size": 4,
        "teacher_tokens": 2_800_000,
    },  # over budget: where copying appears, if not before
}
PROFILE_FIELDS = (
    "seq_len",
    "batch_size",
    "teacher_layers",
    "teacher_width",
    "teacher_heads",
    "teacher_tokens",
    "teacher_lr",
    "teacher_copy_fraction",
    "teacher_copy_random",
    "seed",
)
# --tiny: toy sizes for a dry run on a CPU (the script's logic, not the teacher's quality)
TINY = {
    "seq_len": 32,
    "batch_size": 2,
    "teacher_layers": 1,
    "teacher_width": 32,
    "teacher_heads": 2,
    "teacher_tokens": 256,
    "eval_tokens": 512,
}


def variant_profile(changes: dict[str, Any], device: str, tiny: bool) -> Profile:
    """The cpu profile with a variant's changes, on `device`; at toy sizes with `tiny` (the
    variant's induction fractions and learning rate kept)."""
    profile = CPU.replace(device=device, **changes)
    if tiny:
        kept = {
            k: v for k, v in changes.items() if k.startswith("teacher_copy") or k == "teacher_lr"
        }
        profile = profile.replace(**{**TINY, **kept})
    return profile


def pretrained(profile: Profile, folder: Path) -> tuple[GPT2LMHeadModel, Any]:
    """The variant's teacher: loaded when its training finished before, else
    pre-trained (resuming)."""
    if (folder / "model" / "config.json").is_file():
        return GPT2LMHeadModel.from_pretrained(folder / "model").eval(), teacher_tokenizer(profile)
    return teachers.pretrain_mini_gpt2(
        profile, folder, progress=sys.stderr.isatty(), mixed_precision="no"
    )


def score(model: GPT2LMHeadModel, tokenizer, profile: Profile, copy_n: int) -> dict[str, Any]:
    """Validation perplexity per domain (and the unigram's), copying accuracy per length, the
    length curve."""
    table = teachers.domain_perplexities(model, tokenizer, profile, corpus_name="offline")
    valid = tokenize_split(load_corpus("offline")["validation"], tokenizer)[
        : max(profile.eval_tokens, profile.seq_len)
    ]
    curve = evaluate.length_curve(model, valid, profile.seq_len, bins=8)
    copies = probes.copy_curve(model, tokenizer, COPY_LENGTHS, n=copy_n, seed=profile.seed)
    return {
        "validation_perplexity": table.to_dict(orient="index"),
        "copy_accuracy": {str(c["length"]): c["accuracy"] for c in copies},
        "length_curve": {
            "windows": curve["windows"],
            "position": curve["position"],
            "mean_nll": [math.log(p) for p in curve["ppl"]],
        },
    }


def run_variant(name: str, changes: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Pre-train and score one variant; what it was, what it cost and what it scored."""
    profile = variant_profile(changes, args.device, args.tiny)
    start = time.perf_counter()
    model, tokenizer = pretrained(profile, args.work / name)
    summary = json.loads((args.work / name / "model" / "summary.json").read_text())
    model.to(args.device)
    scores = score(model, tokenizer, profile, args.copy_n)
    return {
        "changes": changes,
        "profile": {k: getattr(profile, k) for k in PROFILE_FIELDS},
        "tokens": summary["tokens"],
        "over_budget": summary["tokens"] > CPU.teacher_tokens,
        "train_seconds": summary["train_seconds"],
        "final_train_loss": summary["final_train_loss"],
        "final_val_loss": summary["final_val_loss"],
        "wall_seconds": time.perf_counter() - start,
        **scores,
    }


def write(path: Path, report: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, path)


def headline(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"FAILED: {result['error']}"
    ppl = {d: round(v["model"], 1) for d, v in result["validation_perplexity"].items()}
    nll = result["length_curve"]["mean_nll"]
    return (
        f"val ppl {ppl}; copy {result['copy_accuracy']}; "
        f"NLL by position {nll[0]:.2f} -> {nll[-1]:.2f}; "
        f"{result['tokens']:,} tokens, {result['wall_seconds']:.0f} s"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="the JSON report (read first: done variants are skipped)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="training folders (default: OUT without .json + '-runs')",
    )
    parser.add_argument(
        "--variants", default=None, help=f"comma-separated subset of: {', '.join(VARIANTS)}"
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu")
    )
    parser.add_argument(
        "--tiny", action="store_true", help="toy sizes: a dry run of the script on a CPU"
    )
    parser.add_argument(
        "--copy-n", type=int, default=64, help="copying sequences per length (default 64)"
    )
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    args.names = names
    args.work = args.work or args.out.with_name(args.out.stem + "-runs")
    if args.device == "cpu" and not args.tiny:
        print(
            "warning: the full sweep on a CPU takes hours per variant; --tiny is the dry run",
            flush=True,
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if report and report.get("tiny", False) != args.tiny:
        kind = "tiny" if report.get("tiny") else "full"
        raise SystemExit(f"{args.out} holds a {kind} sweep; choose another --out")
    report.update(
        provenance(" ".join(["python scripts/cpu_teacher_sweep.py", *args.argv])),
        tiny=args.tiny,
        device=args.device,
        copy_lengths=list(COPY_LENGTHS),
    )
    variants = report.setdefault("variants", {})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(args.names, 1):
        if "error" not in variants.get(name, {"error": "not run"}):
            print(f"[{i}/{len(args.names)}] {name}: done before, skipped", flush=True)
            continue
        print(
            f"[{i}/{len(args.names)}] {name}: {VARIANTS[name] or 'the cpu profile as it is'}",
            flush=True,
        )
        try:
            variants[name] = run_variant(name, VARIANTS[name], args)
        except (TrainingStopped, KeyboardInterrupt):
            print(f"stopped during {name}; run the same command again to resume", flush=True)
            raise
        except Exception as error:  # noqa: BLE001 - one variant's failure must not stop the others
            variants[name] = {
                "changes": VARIANTS[name],
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
        print(f"    {headline(variants[name])}", flush=True)
        write(args.out, report)
    failed = [n for n in args.names if "error" in variants[n]]
    print(
        f"written to {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
