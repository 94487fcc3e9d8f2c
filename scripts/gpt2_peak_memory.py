"""Peak GPU memory of the gpu profile's training and evaluation steps, to tell whether a 16 GB Colab
T4 fits them.

GPT-2 124M with random weights (transformers' GPT2Config defaults, nothing from the hub) is the
teacher; its all-Hyena student (init="teacher") trains with the library's losses, in bf16 autocast
with float32 weights and AdamW, as `hyena_lite.training` does (without accelerate, which adds no
memory on one GPU): KD (the best recipe's KD + 0.5 CE) at the profile's batch, whole or in
gradient-accumulation micro-batches; cross-entropy alone (the ce and scratch baselines); and the
evaluation forward of `distill.validation_loss` (batches of 8, as during training). Each case starts
from an empty allocator and runs two optimiser steps (the second holds the AdamW state); its peak is
torch.cuda.max_memory_allocated. Prints, and with --json writes, one JSON object. With --device cpu
it runs the same steps at any size and reports no memory (a test of the script):

    python scripts/gpt2_peak_memory.py --json $OUT/peak_memory.json
    python scripts/gpt2_peak_memory.py --device cpu --layers 2 --width 32 --heads 2 --vocab 97 \
        --seq-len 32 --batch-size 4
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hyena_lite import distill
from hyena_lite.models import convert
from hyena_lite.profiles import PROFILES

GIB = 2**30
# Of a 16 GB T4's 15.0 GiB, what is left to PyTorch's tensors after the CUDA context (~0.5 GiB).
T4_GIB = 14.5


def build(args, init: str) -> tuple[GPT2LMHeadModel, torch.nn.Module]:
    """(frozen random GPT-2 teacher, its all-Hyena student with `init`), on the device."""
    torch.manual_seed(0)
    sizes = {
        "n_layer": args.layers,
        "n_embd": args.width,
        "n_head": args.heads,
        "vocab_size": args.vocab,
    }
    config = GPT2Config(
        n_positions=args.seq_len, **{k: v for k, v in sizes.items() if v is not None}
    )
    teacher = distill.freeze(GPT2LMHeadModel(config).to(args.device))
    return teacher, convert(teacher, init=init).train()


def random_ids(args, rows: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(
        0, args.vocab or GPT2Config().vocab_size, (rows, args.seq_len), generator=g
    ).to(args.device)


def autocast(args):
    return torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16)


def train_steps(args, student: torch.nn.Module, loss_fn, micro: int, steps: int = 2) -> None:
    """`steps` AdamW steps of args.batch_size sequences each, in micro-batches of `micro` (gradient
    accumulation)."""
    accum = args.batch_size // micro
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4)
    for step in range(steps):
        for k in range(accum):
            with autocast(args):
                loss, _ = loss_fn(student, random_ids(args, micro, step * accum + k))
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def measure(args, name: str, case: Callable[[], None]) -> dict:
    """Run one case from an empty allocator: its peak allocated and reserved GiB (None off CUDA) and
    seconds."""
    gc.collect()
    cuda = torch.device(args.device).type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    clock = time.perf_counter()
    case()
    if cuda:
        torch.cuda.synchronize()
    row = {
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB if cuda else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB if cuda else None,
        "seconds": time.perf_counter() - clock,
    }
    row["fits_t4"] = None if not cuda else row["peak_reserved_gib"] <= T4_GIB
    print(
        f"{name:>16}: "
        + (
            f"peak {row['peak_allocated_gib']:.2f} GiB allocated, {row['peak_reserved_gib']:.2f} "
            f"reserved"
            if cuda
            else "ran (no memory statistics off CUDA)"
        )
        + f", {row['seconds']:.1f} s",
        flush=True,
    )
    return row


def peak_memory(args) -> dict:
    """Every case's peak memory, with the shape and settings that produced it."""
    micro_batches = [m for m in args.micro_batches if m <= args.batch_size]
    bad = [m for m in micro_batches if args.batch_size % m]
    if bad:
        raise ValueError(f"micro-batches {bad} do not divide the batch size {args.batch_size}")
    cases: dict[str, Callable[[], None]] = {}

    def kd(micro: int) -> Callable[[], None]:
        def run() -> None:
            teacher, student = build(args, "teacher")
            train_steps(args, student, distill.kd_objective(teacher, kd=1.0, ce=0.5), micro)

        return run

    def ce(micro: int) -> Callable[[], None]:
        def run() -> None:
            teacher, student = build(args, "random")
            del teacher  # cross-entropy needs no teacher
            train_steps(args, student, distill.ce_objective(), micro)

        return run

    def evaluation(rows: int) -> Callable[[], None]:
        def run() -> None:
            teacher, student = build(args, "teacher")
            del teacher
            with torch.no_grad(), autocast(args):
                distill.validation_loss(student, random_ids(args, rows, 0), batch_size=rows)

        return run

    for m in micro_batches:
        cases[f"kd_micro{m}"] = kd(m)
    for m in micro_batches:
        cases[f"ce_micro{m}"] = ce(m)
    for rows in args.eval_batches:
        cases[f"eval_batch{rows}"] = evaluation(rows)
    report = {
        "shape": "GPT-2 124M (GPT2Config defaults), random weights"
        if args.layers is None
        else f"GPT-2, {args.layers} layers, width {args.width}, vocab {args.vocab}, random weights",
        "student": "all-Hyena, init='teacher'",
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "precision": "bf16 autocast, float32 weights, AdamW",
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else None,
        "t4_budget_gib": T4_GIB,
        "torch": torch.__version__,
        "cases": {name: measure(args, name, case) for name, case in cases.items()},
    }
    return report


def main(argv: list[str] | None = None) -> dict:
    profile = PROFILES["gpu"]  # the hub preset: GPT-2-124M shapes
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=profile.batch_size)
    parser.add_argument("--seq-len", type=int, default=profile.seq_len)
    parser.add_argument(
        "--micro-batches",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[16, 8, 4],
        help="micro-batch sizes of the training cases (the batch size: no accumulation)",
    )
    parser.add_argument(
        "--eval-batches", type=lambda s: [int(x) for x in s.split(",")], default=[8, 16]
    )
    parser.add_argument(
        "--layers", type=int, default=None, help="smaller shapes for a CPU test (default GPT-2's)"
    )
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--heads", type=int, default=None)
    parser.add_argument("--vocab", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args(argv)
    report = peak_memory(args)
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
