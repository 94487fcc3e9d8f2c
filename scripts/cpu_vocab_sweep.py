"""Does a trimmed GPT-2 vocabulary let the cpu profile's mini teacher learn to copy in its CPU
budget? Variants {full 50,257 | trimmed 4,096 | 8,192 tokens} x {tied | untied embeddings} x
{0, 25%, 50% induction rows}, each trained for the optimiser steps that a 2-core CPU does in
--minutes at that vocabulary size (rates measured on a CPU by `measure`), in float32 as the CPU
would, and probed every 10% of training.

    # on a CPU (2 threads, about 3 minutes): tokens/s of one step of each vocabulary size
    python scripts/cpu_vocab_sweep.py measure --out hyena_lite/results/cpu_vocab_rates.json
    # on a GPU: every variant, several processes at a time, into one JSON
    python scripts/cpu_vocab_sweep.py run --out OUT.json
    python scripts/cpu_vocab_sweep.py run --out /tmp/dry.json --tiny   # seconds, on a CPU

Recorded per variant: copy accuracy at 32/64/128 and validation loss every ~10% of the steps;
at the end validation bits per byte (NLL of every non-<|endoftext|> token of the validation split
over its UTF-8 bytes: comparable across vocabularies, unlike per-token perplexity), the mean NLL
by position (8 geometric bins of 256) and the copy curve on 64 sequences per length.
The corpus is read without the `datasets` package.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import torch
from transformers import GPT2LMHeadModel, PreTrainedTokenizerBase

from hyena_lite import evaluate, probes
from hyena_lite.assets import read_checksums, verified_text
from hyena_lite.data import (
    corpus_dir,
    gpt2_tokenizer,
    ordinary_tokens,
    read_manifest,
    split_documents,
    tokenize_split,
)
from hyena_lite.mini_teacher import (
    mini_gpt2_config,
    mini_gpt2_train_config,
    name_causal_lm_loss,
    pretraining_batches,
)
from hyena_lite.profiles import Profile, get_profile
from hyena_lite.provenance import provenance
from hyena_lite.training import train
from hyena_lite.trimmed_tokenizer import build_trimmed, load_trimmed, trimmed_dir

CPU = get_profile("cpu")
FULL = 50257
VOCABS = (FULL, 8192, 4096)
COPY_LENGTHS = (32, 64, 128)
COPY_RANDOM = (
    0.5  # of the induction rows, the fraction whose span is random tokens (as the probe's)
)
PROBES = 10  # copy probes during training (every 10% of the steps)
TINY = {
    "seq_len": 32,
    "batch_size": 2,
    "teacher_layers": 1,
    "teacher_width": 32,
    "teacher_heads": 2,
}


def _variants() -> dict[str, dict[str, Any]]:
    """name -> {vocab, tied, copy, batch_size[, first]}: the grid, then two smaller-batch variants
    (more optimiser steps for the same tokens) and two curricula (`first`: another induction
    fraction until a fraction of the steps)."""
    grid = {}
    for vocab in VOCABS:
        for tied in (True, False):
            for copy in (0.0, 0.25, 0.5):
                name = f"v{vocab}-{'tied' if tied else 'untied'}-copy{int(copy * 100)}"
                grid[name] = {"vocab": vocab, "tied": tied, "copy": copy, "batch_size": 16}
    grid["v4096-untied-copy50-b8"] = {"vocab": 4096, "tied": False, "copy": 0.5, "batch_size": 8}
    grid["v8192-untied-copy25-b8"] = {"vocab": 8192, "tied": False, "copy": 0.25, "batch_size": 8}
    # a curriculum: induction rows only for the first 20% of the steps, then 25% of them
    for vocab in (4096, 8192):
        grid[f"v{vocab}-untied-curriculum"] = {
            "vocab": vocab,
            "tied": False,
            "copy": 0.25,
            "batch_size": 16,
            "first": {"copy": 1.0, "until": 0.2},
        }
    # Round 2, after round 1 (hyena_lite/results/cpu_vocab_sweep_h200.json) found no copying:
    # can this shape learn to copy at sequence 256 in its budget at all? Pure or half induction
    # rows of random tokens only, higher learning rates, more and smaller steps, fewer layers.
    # `changes`: other fields of the cpu profile.
    induction = {"vocab": 4096, "tied": False, "batch_size": 16}
    for name, copy, changes in (
        ("i-copy100", 1.0, {}),
        ("i-copy100-lr8e-3", 1.0, {"teacher_lr": 8e-3}),
        ("i-copy100-b4", 1.0, {"batch_size": 4}),
        ("i-copy100-2layers", 1.0, {"teacher_layers": 2}),
        ("i-copy50-lr4e-3", 0.5, {"teacher_lr": 4e-3}),
        ("i-copy50-lr8e-3", 0.5, {"teacher_lr": 8e-3}),
        ("i-copy50-b4", 0.5, {"batch_size": 4}),
    ):
        grid[name] = {**induction, "copy": copy, "copy_random": 1.0, "changes": changes}
        grid[name]["batch_size"] = changes.get("batch_size", 16)
    return grid


VARIANTS = _variants()


# --- data without `datasets` ------------------------------------------------------------------


def split_texts(split: str) -> dict[str, list[str]]:
    """The offline corpus's documents of one split, as {"text": [...]} (what tokenize_split
    reads)."""
    checksums, prefix = read_checksums(), corpus_dir().name
    docs = split_documents(read_manifest())[split]
    return {"text": [verified_text(f"{prefix}/{d['file']}", checksums) for d in docs]}


def tokenizer_for(vocab: int) -> PreTrainedTokenizerBase:
    """GPT-2's tokenizer, or GPT-2's cut to `vocab` tokens by their train-split frequency (built
    and cached once)."""
    if vocab == FULL:
        return gpt2_tokenizer()
    folder = trimmed_dir(vocab, "offline")
    if not (folder / "gpt2_ids.json").is_file():
        gpt2 = gpt2_tokenizer()
        counts = np.bincount(tokenize_split(split_texts("train"), gpt2).numpy(), minlength=FULL)
        build_trimmed(folder, counts, vocab)
    return load_trimmed(folder)


# --- scores -------------------------------------------------------------------------------------


def copy_accuracy(model, tokenizer, n: int, seed: int) -> dict[str, float]:
    curve = probes.copy_curve(model, tokenizer, COPY_LENGTHS, n=n, seed=seed)
    return {str(c["length"]): c["accuracy"] for c in curve}


# --- one variant --------------------------------------------------------------------------------


def variant_profile(spec: dict[str, Any], tiny: bool) -> Profile:
    profile = CPU.replace(
        device="cuda" if torch.cuda.is_available() else "cpu",
        batch_size=spec["batch_size"],
        teacher_copy_fraction=spec["copy"],
        teacher_copy_random=spec.get("copy_random", COPY_RANDOM) if spec["copy"] else 0.0,
        **{k: v for k, v in spec.get("changes", {}).items() if k != "batch_size"},
    )
    if tiny:
        kept = {k: v for k, v in spec.get("changes", {}).items() if k == "teacher_lr"}
        profile = profile.replace(**TINY, **kept)
    return profile


def steps_for(spec: dict[str, Any], rates: dict[str, Any], minutes: float, seq_len: int) -> int:
    """Optimiser steps that `minutes` of 2-core CPU training buy at the variant's vocabulary."""
    rate = rates["tokens_per_second"][str(spec["vocab"])]
    return max(PROBES, int(minutes * 60 * rate // (spec["batch_size"] * seq_len)))


def run_one(name: str, steps: int, tiny: bool, copy_n: int) -> dict[str, Any]:
    """Train one variant for `steps` and score it."""
    spec = VARIANTS[name]
    profile = variant_profile(spec, tiny)
    tokenizer = tokenizer_for(spec["vocab"])
    train_tokens = tokenize_split(split_texts("train"), tokenizer)
    valid = tokenize_split(split_texts("validation"), tokenizer)
    if tiny:
        valid = valid[: 16 * profile.seq_len]
    val_windows = valid[: len(valid) // profile.seq_len * profile.seq_len].view(-1, profile.seq_len)
    val_windows = val_windows[:: max(1, len(val_windows) // 64)][:64]  # 64 windows, spread out
    config = mini_gpt2_config(profile, len(tokenizer))
    config.tie_word_embeddings = spec["tied"]
    torch.manual_seed(profile.seed)
    model = GPT2LMHeadModel(config)
    name_causal_lm_loss(model)
    vocab = ordinary_tokens(tokenizer)
    probe_n = 16 if tiny else 32

    def evaluate_now(m):
        m_loss = float(
            m(
                input_ids=val_windows.to(probes.model_device(m)),
                labels=val_windows.to(probes.model_device(m)),
            ).loss
        )
        return {
            "val_loss": m_loss,
            **{f"copy_{k}": v for k, v in copy_accuracy(m, tokenizer, probe_n, 1).items()},
        }

    train_config = mini_gpt2_train_config(profile)
    train_config = dataclasses.replace(
        train_config,
        steps=steps,
        warmup=max(1, steps // 20),
        eval_every=max(1, steps // PROBES),
        save_every=0,
        out_dir=None,
        progress=False,
        mixed_precision="no",
        tag=f"cpu vocab sweep {name}",
    )
    start = time.perf_counter()
    first = spec.get("first")
    switch = int(first["until"] * steps) if first else 0
    early = profile.replace(teacher_copy_fraction=first["copy"]) if first else profile

    def batches(start: int):
        """Batch k from `early` before the switch, from `profile` after; k depends on k only."""
        eos = tokenizer.eos_token_id
        if start < switch:
            yield from itertools.islice(
                pretraining_batches(train_tokens, early, vocab, eos, start), switch - start
            )
        yield from pretraining_batches(train_tokens, profile, vocab, eos, max(start, switch))

    result = train(
        model,
        lambda m, b: (m(input_ids=b, labels=b).loss, {}),
        batches,
        train_config,
        eval_fn=evaluate_now,
    )
    train_seconds = time.perf_counter() - start
    model.eval()
    curve = evaluate.length_curve(model, valid, profile.seq_len, bins=8)
    return {
        "spec": spec,
        "profile": {
            k: getattr(profile, k)
            for k in (
                "seq_len",
                "batch_size",
                "teacher_layers",
                "teacher_width",
                "teacher_heads",
                "teacher_lr",
                "teacher_copy_fraction",
                "teacher_copy_random",
                "seed",
            )
        },
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "head_is_embedding": model.lm_head.weight is model.transformer.wte.weight,
        "steps": steps,
        "tokens": result.tokens,
        "train_seconds_here": train_seconds,
        "final_train_loss": result.losses[-1],
        "during_training": result.evals,
        "bits_per_byte": evaluate.window_bits_per_byte(
            model, valid, profile.seq_len, evaluate.token_byte_lengths(tokenizer)
        ),
        "validation_tokens": len(valid),
        "copy_accuracy": copy_accuracy(model, tokenizer, copy_n, 0),
        "length_curve": {
            "windows": curve["windows"],
            "position": curve["position"],
            "mean_nll": [math.log(p) for p in curve["ppl"]],
        },
    }


# --- measure, run -------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> int:
    """Tokens/s of the cpu profile's pre-training step (batch 16 x 256, float32) per vocabulary
    size and tying, on `--threads` CPU threads, from the fastest of steps 3..N of a short run on
    random tokens, appended to the runs in --out. Other work on shared cores slows some steps and
    some calls, so the rate of a vocabulary size is the fastest of every run, tied or untied (tying
    changes no step's arithmetic): the nearest to free cores."""
    torch.set_num_threads(args.threads)
    profile = CPU.replace(device="cpu")
    out = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    run_ = {
        **provenance(" ".join(["python scripts/cpu_vocab_sweep.py", *args.argv])),
        "threads": args.threads,
        "steps": args.steps,
        "batch_size": profile.batch_size,
        "seq_len": profile.seq_len,
        "fastest_step": {},
        "median_step": {},
    }
    for vocab in VOCABS:
        for tied in (True, False):
            config = mini_gpt2_config(profile, vocab)
            config.tie_word_embeddings = tied
            torch.manual_seed(0)
            model = GPT2LMHeadModel(config)
            name_causal_lm_loss(model)
            generator = torch.Generator().manual_seed(0)

            def batches(start, v=vocab, generator=generator):
                while True:
                    yield torch.randint(
                        v, (profile.batch_size, profile.seq_len), generator=generator
                    )

            config_run = dataclasses.replace(
                mini_gpt2_train_config(profile),
                steps=args.steps,
                eval_every=0,
                save_every=0,
                out_dir=None,
                progress=False,
                mixed_precision="no",
                device="cpu",
            )
            result = train(
                model, lambda m, b: (m(input_ids=b, labels=b).loss, {}), batches, config_run
            )
            seconds = np.diff([r["wall_seconds"] for r in result.records[2:]])
            tokens = profile.batch_size * profile.seq_len
            key = f"{vocab}-{'tied' if tied else 'untied'}"
            run_["fastest_step"][key] = tokens / float(seconds.min())
            run_["median_step"][key] = tokens / float(np.median(seconds))
            print(
                f"vocab {key}: {run_['fastest_step'][key]:.0f} tokens/s "
                f"(median step {run_['median_step'][key]:.0f})",
                flush=True,
            )
    out["runs"].append(run_)
    out["tokens_per_second"] = pooled_rates(out["runs"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write(args.out, out)
    return 0


def pooled_rates(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per vocabulary size, the fastest rate of any run, tied or untied, of any statistic."""
    rates: dict[str, float] = {}
    for run_ in runs:
        for stat in ("fastest_step", "median_step", "mean_step"):
            for key, rate in run_.get(stat, {}).items():
                vocab = key.split("-")[0]
                rates[vocab] = max(rates.get(vocab, 0.0), rate)
    return rates


def run(args: argparse.Namespace) -> int:
    """Every variant in worker processes, --parallel at a time; one JSON at --out."""
    rates = json.loads(args.rates.read_text())
    seq_len = TINY["seq_len"] if args.tiny else CPU.seq_len
    for vocab in VOCABS:  # built once here, not by every worker at the same time
        tokenize_split(split_texts("train"), tokenizer_for(vocab))
        tokenize_split(split_texts("validation"), tokenizer_for(vocab))
    args.work.mkdir(parents=True, exist_ok=True)
    steps = {
        n: (3 * PROBES if args.tiny else steps_for(VARIANTS[n], rates, args.minutes, seq_len))
        for n in args.names
    }
    report: dict[str, Any] = provenance(" ".join(["python scripts/cpu_vocab_sweep.py", *args.argv]))
    report.update(
        tiny=args.tiny,
        minutes_of_cpu=args.minutes,
        cpu_rates=rates,
        copy_lengths=list(COPY_LENGTHS),
        copy_random=COPY_RANDOM,
        variants={},
    )
    pending, running, start = list(args.names), {}, time.perf_counter()
    while pending or running:
        while pending and len(running) < args.parallel:
            name = pending.pop(0)
            cmd = [
                sys.executable,
                __file__,
                "one",
                "--name",
                name,
                "--steps",
                str(steps[name]),
                "--out",
                str(args.work / f"{name}.json"),
                "--copy-n",
                str(args.copy_n),
                "--threads",
                str(args.threads),
            ] + (["--tiny"] if args.tiny else [])
            log = open(args.work / f"{name}.log", "w")  # noqa: SIM115 - closed when it ends
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
            print(f"started {name}: {steps[name]} steps", flush=True)
        time.sleep(0.5)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            path = args.work / f"{name}.json"
            if proc.returncode == 0 and path.is_file():
                report["variants"][name] = json.loads(path.read_text())
            else:
                tail = (args.work / f"{name}.log").read_text()[-3000:]
                report["variants"][name] = {"spec": VARIANTS[name], "error": tail}
            elapsed = time.perf_counter() - start
            print(f"{elapsed:6.0f} s {name}: {headline(report['variants'][name])}", flush=True)
            write(args.out, report)
    report["wall_seconds"] = time.perf_counter() - start
    write(args.out, report)
    failed = [n for n, v in report["variants"].items() if "error" in v]
    print(f"written to {args.out}" + (f"; failed: {failed}" if failed else ""), flush=True)
    return 1 if failed else 0


def one(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    try:
        result = run_one(args.name, args.steps, args.tiny, args.copy_n)
    except Exception:  # noqa: BLE001 - the parent records the traceback from the log
        traceback.print_exc()
        return 1
    write(args.out, result)
    return 0


def headline(result: dict[str, Any]) -> str:
    if "error" in result:
        return "FAILED (see its log)"
    nll = result["length_curve"]["mean_nll"]
    return (
        f"copy {result['copy_accuracy']}; {result['bits_per_byte']:.3f} bits/byte; "
        f"NLL by position {nll[0]:.2f} -> {nll[-1]:.2f}; {result['steps']} steps, "
        f"{result['train_seconds_here']:.0f} s"
    )


def write(path: Path, report: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="CPU tokens/s per vocabulary size")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--steps", type=int, default=20)
    r = sub.add_parser("run", help="every variant, into one JSON")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--rates", type=Path, default=Path("hyena_lite/results/cpu_vocab_rates.json"))
    r.add_argument("--work", type=Path, default=None, help="per-variant logs (default OUT-runs)")
    r.add_argument("--minutes", type=float, default=8.0, help="CPU minutes per variant")
    r.add_argument("--parallel", type=int, default=6)
    r.add_argument("--threads", type=int, default=2, help="CPU threads per worker")
    r.add_argument("--variants", default=None, help=f"comma-separated subset of {list(VARIANTS)}")
    r.add_argument("--tiny", action="store_true", help="toy sizes: a dry run on a CPU")
    r.add_argument("--copy-n", type=int, default=64)
    o = sub.add_parser("one", help="(internal) one variant")
    o.add_argument("--name", required=True, choices=list(VARIANTS))
    o.add_argument("--steps", type=int, required=True)
    o.add_argument("--out", type=Path, required=True)
    o.add_argument("--copy-n", type=int, default=64)
    o.add_argument("--threads", type=int, default=2)
    o.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.command == "run":
        args.names = args.variants.split(",") if args.variants else list(VARIANTS)
        unknown = [n for n in args.names if n not in VARIANTS]
        if unknown:
            parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
        args.work = args.work or args.out.with_name(args.out.stem + "-runs")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return {"measure": measure, "run": run, "one": one}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
