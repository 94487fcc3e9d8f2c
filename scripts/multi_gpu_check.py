"""Issue #5: the same KD run on one process and on N processes at the same global batch, against
run-to-run noise.

Three runs of one distillation (a random-weight GPT-2 teacher, its all-Hyena student, KD + 0.5 CE,
fixed seeds and data): `single` (one process, data seed 0), `noise` (one process, data seed 1: how
much two equally good runs differ) and `multi` (N processes through torchrun, data seed 0, same
global batch). Writes one JSON: the three loss curves; |multi - single| (max, mean) against |noise -
single| and the step-to-step spread of the loss; a verdict; and checks of the loop itself: each
process trained on its own contiguous rows of every global batch and together on all of them, every
process ended with the same weights, and an interrupted N-process run with dropout resumes exactly.

    # CPU: 2 processes, gloo
    python scripts/multi_gpu_check.py --size tiny --device cpu --json check.json
    # real text, to carry
    python scripts/multi_gpu_check.py --export-tokens .carry/gpt2_train_tokens.npy
    # 2 GPUs: GPT-2 124M shapes, bf16
    python scripts/multi_gpu_check.py --size gpt2 --processes 2 \
        --tokens .carry/gpt2_train_tokens.npy --json $OUT/multi_gpu.json

`gpt2` trains on --tokens (GPT-2 ids of the offline corpus, written by --export-tokens) when given,
else on a synthetic stream (runs of counting ids). With two or more GPUs the two one-process runs go
side by side, one per GPU; elsewhere one after the other, in this process. Run it from the
repository root (PYTHONPATH=. where hyena_lite is not installed); the N-process run is started with
torchrun.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hyena_lite.data import iterate_batches
from hyena_lite.distill import freeze, kd_objective
from hyena_lite.models import convert
from hyena_lite.provenance import provenance
from hyena_lite.training import TrainConfig, train

# Shapes and schedules. Global batch = batch_size x grad_accum sequences per optimiser step,
# whatever the number of processes (each takes batch_size / N rows of every micro-batch).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "teacher": {
            "vocab_size": 96,
            "n_positions": 32,
            "n_embd": 32,
            "n_layer": 2,
            "n_head": 2,
            "bos_token_id": 95,
            "eos_token_id": 95,
        },
        "seq_len": 32,
        "batch_size": 4,
        "grad_accum": 2,
        "steps": 16,
        "lr": 1e-2,
        "warmup": 2,
        "synthetic_tokens": 1 << 14,
    },
    "gpt2": {
        "teacher": {
            "n_positions": 1024
        },  # GPT2Config defaults otherwise: 12 layers, width 768, vocab 50257
        "seq_len": 1024,
        "batch_size": 16,
        "grad_accum": 1,
        "steps": 150,
        "lr": 6e-4,
        "warmup": 15,
        "synthetic_tokens": 1 << 22,
    },
}
RESUME = {
    "steps": 8,
    "save_every": 3,
    "stop_in_step": 5,
    "dropout": 0.1,
}  # stop in the 6th step: resume from 3


class _Interrupted(Exception):
    """Raised by the data stream of the resume check to stop a run as a crash would."""


def teacher_and_student(
    size: str, dropout: float, student_seed: int = 1
) -> tuple[GPT2LMHeadModel, Any]:
    """The frozen random-weight teacher (always the same weights) and its all-Hyena student
    (teacher-initialised)."""
    torch.manual_seed(0)
    teacher = freeze(
        GPT2LMHeadModel(
            GPT2Config(
                **SIZES[size]["teacher"],
                resid_pdrop=dropout,
                embd_pdrop=dropout,
                attn_pdrop=dropout,
            )
        )
    )
    torch.manual_seed(student_seed)
    return teacher, convert(teacher, init="teacher")


def load_tokens(size: str, path: str | None) -> torch.Tensor:
    """The token stream: ids from a .npy file, or a fixed synthetic stream that can be learnt (see
    `counting`)."""
    vocab = GPT2Config(**SIZES[size]["teacher"]).vocab_size
    if path is None:
        return counting(SIZES[size]["synthetic_tokens"], vocab)
    tokens = torch.from_numpy(np.load(path).astype(np.int64))
    if tokens.dim() != 1 or int(tokens.max()) >= vocab:
        raise ValueError(
            f"{path}: expected a 1-D array of ids below the vocabulary size {vocab}, got shape "
            f"{tuple(tokens.shape)} with largest id {int(tokens.max())}; write it with "
            f"--export-tokens"
        )
    return tokens


def counting(n: int, vocab: int, run: int = 16) -> torch.Tensor:
    """n ids that count up by one (mod vocab) in runs of `run`, each run from a random start (seed
    1234)."""
    starts = torch.randint(0, vocab, (-(-n // run),), generator=torch.Generator().manual_seed(1234))
    return (starts.repeat_interleave(run)[:n] + torch.arange(n) % run) % vocab


def batches(size: str, tokens: torch.Tensor, data_seed: int):
    spec = SIZES[size]
    return lambda start: iterate_batches(
        tokens, spec["batch_size"], spec["seq_len"], seed=data_seed, start_step=start
    )


def train_config(size: str, device: str, **changes) -> TrainConfig:
    spec = SIZES[size]
    return TrainConfig(
        **{
            "steps": spec["steps"],
            "lr": spec["lr"],
            "warmup": spec["warmup"],
            "batch_size": spec["batch_size"],
            "grad_accum": spec["grad_accum"],
            "seq_len": spec["seq_len"],
            "device": device,
            "progress": False,
            **changes,
        }
    )


def row_hashes(ids: torch.Tensor) -> list[str]:
    """A short fingerprint of each sequence of a batch [B, L]."""
    return [hashlib.sha1(row.numpy().tobytes()).hexdigest()[:12] for row in ids.cpu().long()]


def weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def resume_check(size: str, tokens: torch.Tensor, device: str, work_dir: str) -> dict[str, Any]:
    """Losses of an uninterrupted run with dropout, and of the same run stopped inside a step and
    resumed."""
    data = batches(size, tokens, 0)
    config = train_config(size, device, steps=RESUME["steps"], save_every=RESUME["save_every"])
    teacher, student = teacher_and_student(size, RESUME["dropout"])
    objective = kd_objective(teacher, 1.0, 0.5)
    reference = train(student, objective, data, config).losses
    stop_at = (
        RESUME["stop_in_step"] + 1
    ) * config.grad_accum - 1  # the last micro-batch of that (0-based) step

    def crashing(start: int):
        for i, batch in enumerate(data(start)):
            if start + i == stop_at:
                raise _Interrupted
            yield batch

    out_dir = str(Path(work_dir) / "resume")
    try:
        train(
            teacher_and_student(size, RESUME["dropout"])[1],
            objective,
            crashing,
            dataclasses.replace(config, out_dir=out_dir),
        )
        raise RuntimeError("the resume check's run was not interrupted")
    except _Interrupted:
        pass
    other = teacher_and_student(size, RESUME["dropout"], student_seed=7)[
        1
    ]  # the checkpoint must overwrite it
    resumed = train(other, objective, data, dataclasses.replace(config, out_dir=out_dir)).losses
    return {
        "reference": reference,
        "resumed": resumed,
        "max_abs_diff": max(abs(a - b) for a, b in zip(reference, resumed, strict=False)),
        **RESUME,
    }


def worker(
    size: str,
    data_seed: int,
    tokens_path: str | None,
    device: str,
    json_path: str,
    work_dir: str | None = None,
) -> dict[str, Any]:
    """One training run in this process (one of N under torchrun); writes JSON_PATH (.rankR under
    torchrun)."""
    from accelerate import PartialState

    tokens = load_tokens(size, tokens_path)
    teacher, student = teacher_and_student(size, dropout=0.0)
    objective, seen = kd_objective(teacher, 1.0, 0.5), []

    def recording(model, batch):
        seen.append(row_hashes(batch))
        return objective(model, batch)

    start = time.perf_counter()
    result = train(student, recording, batches(size, tokens, data_seed), train_config(size, device))
    seconds = time.perf_counter() - start
    state = PartialState()
    report = {
        "rank": state.process_index,
        "processes": state.num_processes,
        "data_seed": data_seed,
        "losses": result.losses,
        "kd": [r["kd"] for r in result.records],
        "ce": [r["ce"] for r in result.records],
        "seen": seen,
        "weights": weights_hash(student),
        "seconds": seconds,
        "tokens": result.tokens,
        "device": str(next(student.parameters()).device),
    }
    if work_dir is not None:
        report["resume"] = resume_check(size, tokens, device, work_dir)
    path = json_path if state.num_processes == 1 else f"{json_path}.rank{state.process_index}"
    Path(path).write_text(json.dumps(report))
    return report


# ----------------------------------------------------------------------------------- orchestration


def _worker_command(
    args, data_seed: int, json_path: str, processes: int, work_dir: str | None
) -> list[str]:
    cmd = (
        [
            __file__,
            "--worker",
            "--size",
            args.size,
            "--device",
            args.device,
            "--data-seed",
            str(data_seed),
            "--json",
            json_path,
        ]
        + (["--tokens", args.tokens] if args.tokens else [])
        + (["--work-dir", work_dir] if work_dir else [])
        + (["--steps", str(args.steps)] if args.steps else [])
    )
    if processes == 1:
        return [sys.executable, *cmd]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        *cmd,
    ]


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    print("+", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})})


def _wait(proc: subprocess.Popen, what: str) -> None:
    if proc.wait():
        raise RuntimeError(
            f"the {what} run failed (exit status {proc.returncode}); its output is above"
        )


def single_runs(args, tmp: str) -> dict[str, dict[str, Any]]:
    """The one-process runs `single` (data seed 0) and `noise` (data seed 1): side by side on two
    GPUs, else here."""
    seeds = {"single": 0, "noise": 1}
    if args.device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() >= 2:
        paths = {name: f"{tmp}/{name}.json" for name in seeds}
        procs = {
            name: _run(
                _worker_command(args, seed, paths[name], 1, None),
                {"CUDA_VISIBLE_DEVICES": str(gpu)},
            )
            for gpu, (name, seed) in enumerate(seeds.items())
        }
        for name, proc in procs.items():
            _wait(proc, name)
        return {name: json.loads(Path(paths[name]).read_text()) for name in seeds}
    threads = torch.get_num_threads()
    torch.set_num_threads(
        1
    )  # like each torchrun process (OMP_NUM_THREADS=1): tiny models only lose to more
    try:
        return {
            name: worker(args.size, seed, args.tokens, args.device, f"{tmp}/{name}.json")
            for name, seed in seeds.items()
        }
    finally:
        torch.set_num_threads(threads)


def multi_run(args, tmp: str) -> list[dict[str, Any]]:
    """The N-process run (data seed 0) under torchrun, with the resume check; one report per
    process."""
    path = f"{tmp}/multi.json"
    _wait(_run(_worker_command(args, 0, path, args.processes, tmp)), f"{args.processes}-process")
    return [json.loads(Path(f"{path}.rank{r}").read_text()) for r in range(args.processes)]


def global_rows(size: str, tokens_path: str | None, micro_batches: int) -> list[list[str]]:
    """The fingerprints of the rows of each global micro-batch of data seed 0, as the data stream
    yields them."""
    stream = batches(size, load_tokens(size, tokens_path), 0)(0)
    return [row_hashes(next(stream)) for _ in range(micro_batches)]


def curve_difference(a: list[float], b: list[float]) -> dict[str, float]:
    diff = np.abs(np.array(a) - np.array(b))
    scale = np.abs(np.array(b))
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "max_rel": float((diff / scale).max()),
        "final_abs": float(diff[-1]),
    }


def step_spread(losses: list[float]) -> float:
    """The step-to-step standard deviation of the loss over the second half: std(l[t] - l[t-1]) /
    sqrt(2)."""
    half = np.array(losses[len(losses) // 2 :])
    return float(np.diff(half).std() / math.sqrt(2))


def compare(
    single: dict, noise: dict, ranks: list[dict], expected_rows: list[list[str]]
) -> dict[str, Any]:
    """Curves, differences, noise, verdict and the loop's checks from the runs' reports."""
    multi = ranks[0]
    world = len(ranks)
    shards_ok = all(
        sum((r["seen"][k] for r in ranks), []) == rows
        and all(len(r["seen"][k]) == len(rows) // world for r in ranks)
        for k, rows in enumerate(expected_rows)
    ) and all(len(r["seen"]) == len(expected_rows) for r in ranks)
    agree = curve_difference(multi["losses"], single["losses"])
    noise_diff = curve_difference(noise["losses"], single["losses"])
    spread = step_spread(single["losses"])
    within = (
        agree["mean_abs"] <= noise_diff["mean_abs"] and agree["max_abs"] <= noise_diff["max_abs"]
    )
    resume = multi.get("resume")
    return {
        "curves": {"single": single["losses"], "multi": multi["losses"], "noise": noise["losses"]},
        "multi_vs_single": agree,
        "multi_vs_single_metrics": {k: curve_difference(multi[k], single[k]) for k in ("kd", "ce")},
        "noise": {"noise_vs_single": noise_diff, "step_to_step_std": spread},
        "ratio_mean_abs_diff_to_noise": agree["mean_abs"] / noise_diff["mean_abs"],
        "within_noise": bool(within),
        "verdict": (
            f"{world} processes {'agree with' if within else 'DIFFER from'} one process within the "
            f"run-to-run noise: mean |diff| {agree['mean_abs']:.3g} vs "
            f"{noise_diff['mean_abs']:.3g} between "
            f"two one-process runs with other data orders (max {agree['max_abs']:.3g} vs "
            f"{noise_diff['max_abs']:.3g}; step-to-step std {spread:.3g})"
        ),
        "checks": {
            "shards_partition_each_global_batch": bool(shards_ok),
            "single_saw_every_row": single["seen"] == expected_rows,
            "weights_identical_across_processes": len({r["weights"] for r in ranks}) == 1,
            "losses_identical_across_processes": all(r["losses"] == multi["losses"] for r in ranks),
            "resume_max_abs_diff": None if resume is None else resume["max_abs_diff"],
        },
        "resume": resume,
        "seconds": {
            "single": single["seconds"],
            "noise": noise["seconds"],
            "multi": multi["seconds"],
        },
        "tokens_per_second": {
            "single": single["tokens"] / single["seconds"],
            "multi": multi["tokens"] / multi["seconds"],
        },
        "devices": {"single": single["device"], "multi": [r["device"] for r in ranks]},
    }


def export_tokens(path: str, limit: int) -> None:
    """Write the first `limit` GPT-2 token ids of the offline corpus's train split as a uint16
    .npy."""
    from hyena_lite.data import gpt2_tokenizer, load_corpus, tokenize_split

    tokens = tokenize_split(load_corpus("offline")["train"], gpt2_tokenizer())[:limit]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.save(path, tokens.numpy().astype(np.uint16))
    print(f"wrote {len(tokens):,} tokens to {path} ({Path(path).stat().st_size / 2**20:.1f} MiB)")


def check(args) -> dict[str, Any]:
    """All three runs and their comparison, as one report."""
    spec = SIZES[args.size]
    if spec["batch_size"] % args.processes:
        raise ValueError(
            f"--processes {args.processes} must divide the batch size {spec['batch_size']} of "
            f"--size {args.size}"
        )
    gpus = torch.cuda.device_count() if args.device != "cpu" else 0
    if 0 < gpus < args.processes:
        raise ValueError(
            f"--processes {args.processes} needs as many GPUs, {gpus} are visible; "
            f"use fewer processes, or --device cpu"
        )
    with tempfile.TemporaryDirectory(prefix="multi_gpu_check_") as tmp:
        start = time.perf_counter()
        ones = single_runs(args, tmp)
        ranks = multi_run(args, tmp)
        rows = global_rows(args.size, args.tokens, spec["steps"] * spec["grad_accum"])
        report = compare(ones["single"], ones["noise"], ranks, rows)
    precision = "bf16 autocast" if "cuda" in report["devices"]["single"] else "float32"
    return {
        "issue": 5,
        "size": args.size,
        "processes": args.processes,
        "setup": {
            **{k: v for k, v in spec.items() if k not in ("teacher", "synthetic_tokens")},
            "teacher_config": spec["teacher"],
            "precision": precision,
            "global_batch": spec["batch_size"] * spec["grad_accum"],
            "loss": "KD (T=1) + 0.5 CE",
            "teacher": "GPT-2 with random weights (seed 0), GPT2Config defaults but for "
            "teacher_config, "
            "dropout 0",
            "student": "all-Hyena, convert(teacher, init='teacher')",
            "data": args.tokens or f"{spec['synthetic_tokens']:,} synthetic ids (see counting())",
        },
        **report,
        "total_seconds": time.perf_counter() - start,
        **provenance(
            f"python scripts/multi_gpu_check.py --size {args.size} --processes {args.processes} "
            f"--device {args.device}"
            + (f" --tokens {args.tokens}" if args.tokens else "")
            + (f" --steps {args.steps}" if args.steps else "")
            + " --json FILE"
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="gpt2" if torch.cuda.is_available() else "tiny"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=max(2, torch.cuda.device_count()),
        help="processes of the multi-process run (default: the GPUs, at least 2)",
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu"), default="auto", help="cpu: force the CPU (gloo)"
    )
    parser.add_argument(
        "--tokens", default=None, help=".npy of token ids to train on (default: synthetic ids)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="optimiser steps of each run (default: the size's)"
    )
    parser.add_argument("--json", default=None, help="write the report here")
    parser.add_argument(
        "--export-tokens",
        default=None,
        metavar="PATH",
        help="only write the offline corpus's first --export-limit GPT-2 train tokens to PATH",
    )
    parser.add_argument("--export-limit", type=int, default=4_000_000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps:
        SIZES[args.size]["steps"] = args.steps
    if args.export_tokens:
        export_tokens(args.export_tokens, args.export_limit)
        return 0
    if args.worker:
        worker(args.size, args.data_seed, args.tokens, args.device, args.json, args.work_dir)
        return 0
    report = check(args)
    print(report["verdict"])
    print(json.dumps(report["checks"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    ok = all(v for k, v in report["checks"].items() if k != "resume_max_abs_diff")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
