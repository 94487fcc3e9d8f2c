"""Tokens per second of the SmolLM2-shaped KD step as `hyena_lite.training` runs it, with and
without torch.compile (issue 20: a 10-minute call trains what the step's speed allows).

A random SmolLM2-135M-shaped teacher (LlamaConfig, float32 weights, bf16 autocast) and its hybrid
student (attention at --attention-layers, every other layer Hyena; `convert(init="teacher")`),
micro-batches of 8 x 1024 random tokens, `distill.kd` as the `transfer` recipe's KD stage runs it
(KL plus 0.5 x CE) and as the induction stage does (KL plus the copy-aware loss under eager
attention, lr 3x). Each variant sets TrainConfig.compile ("no"; "regions": each repeated layer
compiled once; "whole": the model as one graph; the teacher likewise) and trains --steps steps
from the same weights on the same batches; its tokens/s is over the steps after --warmup
(compilation happens in the first; with --profile, the GPU's kernel time per step beside), its
losses are compared with the first variant's of the same objective. The file is rewritten after
every variant; a variant that fails records its error. A mode with the suffix `+eager_logits`
("whole+eager_logits") compiles the models but leaves the loss's logit terms eager: the A/B of
compiling them.
--smoke: tiny shapes on the CPU with the aot_eager backend, in seconds.

    PYTHONPATH=. python3 scripts/kd_step_speed.py --out $OUT/kd_step_speed.json
    PYTHONPATH=. python3 scripts/kd_step_speed.py --smoke --out /tmp/kd.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch

from hyena_lite import distill, runs, training
from hyena_lite.distill import stages
from hyena_lite.models import convert
from hyena_lite.provenance import provenance
from hyena_lite.teachers import SMOLLM2_SHAPES, SMOLLM2_TINY_SHAPES
from hyena_lite.training import TrainConfig

_KD_STAGE = {name: options for name, _, options in distill.RECIPES["transfer"]["stages"]}["kd"]
# distill.kd's options of the two stages that train the hybrid longest, and their scale of --lr
# (the KD stage's own 0.3 is left out: a rate does not change the step's speed)
OBJECTIVES = {
    "kd": ({"ce_weight": _KD_STAGE["ce_weight"]}, 1.0),
    "induction": (
        {"induction_weight": distill.INDUCTION_STAGE["induction_weight"]},
        distill.INDUCTION_STAGE["lr_scale"],
    ),
}


@contextlib.contextmanager
def gpu_kernels(enabled: bool, top: int = 12) -> Iterator[dict[str, Any]]:
    """With `enabled` on CUDA, torch.profiler (CUDA activity only) over the block; the dict it
    yields then holds `total_us`, the sum of its kernels' durations, and `top`, the kernels of
    largest total time (name, calls, us)."""
    found: dict[str, Any] = {}
    if not (enabled and torch.cuda.is_available()):
        yield found
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        yield found
    torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    events.sort(key=lambda e: e.self_device_time_total, reverse=True)
    found["total_us"] = sum(e.self_device_time_total for e in events)
    found["top"] = [
        {"name": e.key[:120], "calls": e.count, "us": round(e.self_device_time_total)}
        for e in events[:top]
    ]


EAGER_LOGITS = "+eager_logits"  # a mode's suffix: the models compiled, the logit terms not


@contextlib.contextmanager
def logit_terms_left_eager(enabled: bool) -> Iterator[None]:
    """With `enabled`, distill.kd compiles its models but not its logit terms
    (`stages.logit_terms`): the A/B that measures what compiling those terms buys."""
    original = stages.compiled
    if enabled:
        stages.compiled = lambda fn, mode: fn if fn is stages.logit_terms else original(fn, mode)
    try:
        yield
    finally:
        stages.compiled = original


def variant(teacher, shapes: dict, args, objective: str, mode: str) -> dict[str, Any]:
    """Train the hybrid --steps steps with one objective and compile mode (with the suffix
    EAGER_LOGITS: its logit terms eager); tokens/s after warm-up and the losses."""
    compile_mode = mode.removesuffix(EAGER_LOGITS)
    torch.manual_seed(0)
    layers = shapes["num_hidden_layers"]
    keep = [i for i in args.attention_layers if i < layers]
    student = convert(teacher, hyena_layers=[i for i in range(layers) if i not in keep])
    g = torch.Generator().manual_seed(0)
    batches = [
        torch.randint(0, shapes["vocab_size"], (args.batch, args.seq), generator=g)
        for _ in range(args.steps)
    ]
    options, lr_scale = OBJECTIVES[objective]
    config = TrainConfig(
        steps=args.steps,
        lr=args.lr * lr_scale,
        batch_size=args.batch,
        seq_len=args.seq,
        progress=False,
        compile=compile_mode,
    )
    clock = time.perf_counter()
    with logit_terms_left_eager(mode != compile_mode), gpu_kernels(args.profile) as kernels:
        result = distill.kd(
            student, teacher, lambda start: iter(batches[start:]), config, **options
        )
    first, last = result.records[args.warmup - 1], result.records[-1]
    tokens = last["tokens"] - first["tokens"]
    seconds = last["wall_seconds"] - first["wall_seconds"]
    out = {
        "objective": objective,
        "compile": mode,
        "tokens_per_s": round(tokens / seconds),
        "step_ms": round(seconds / (len(result.records) - args.warmup) * 1e3, 2),
        "warmup_s": round(first["wall_seconds"], 1),
        "total_s": round(time.perf_counter() - clock, 1),
        "losses": [round(x, 5) for x in result.losses],
    }
    if kernels:  # every step's kernels, compiling steps included: about one step's GPU work
        out["gpu_busy_ms_per_step"] = round(kernels["total_us"] / args.steps / 1e3, 2)
        out["top_kernels"] = kernels["top"]
    if torch.cuda.is_available():
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.reset_peak_memory_stats()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--warmup", type=int, default=4, help="steps left out of the tokens/s")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument(
        "--attention-layers", type=lambda s: [int(x) for x in s.split(",")], default=[17, 18]
    )
    p.add_argument(
        "--modes",
        type=lambda s: s.split(","),
        default=["no", "regions", "whole"],
        help=f"TrainConfig.compile modes; a mode ending in {EAGER_LOGITS} leaves the logit terms "
        "eager",
    )
    p.add_argument("--objectives", type=lambda s: s.split(","), default=list(OBJECTIVES))
    p.add_argument(
        "--profile",
        action="store_true",
        help="also the GPU's kernel time per step (torch.profiler, CUDA only; slows the host)",
    )
    p.add_argument("--budget-s", type=float, default=480.0, help="no variant starts after this")
    args = p.parse_args(argv)
    shapes = SMOLLM2_SHAPES
    if args.smoke:
        shapes, training.COMPILE_BACKEND = SMOLLM2_TINY_SHAPES, "aot_eager"
        args.batch, args.seq, args.steps, args.warmup = 2, 64, 4, 2
        args.attention_layers = [1]
    if not 1 <= args.warmup < args.steps:
        raise SystemExit(f"--warmup must be in [1, --steps), got {args.warmup}, {args.steps}")
    from transformers import LlamaConfig, LlamaForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    teacher = distill.freeze(LlamaForCausalLM(LlamaConfig(**shapes)).float().to(device))
    command = shlex.join(["python3", "scripts/kd_step_speed.py", *(argv or sys.argv[1:])])
    report: dict[str, Any] = {
        **provenance(command),
        "shapes": shapes,
        "batch": args.batch,
        "seq": args.seq,
        "attention_layers": args.attention_layers,
        "backend": training.COMPILE_BACKEND,
        "variants": [],
        "skipped": [],
    }
    start = time.perf_counter()
    for objective in args.objectives:
        for mode in args.modes:
            if time.perf_counter() - start > args.budget_s:
                report["skipped"].append(f"{objective}/{mode}")
                continue
            try:
                row = variant(teacher, shapes, args, objective, mode)
            except Exception as error:  # noqa: BLE001 - a failed variant is a result too
                row = {"objective": objective, "compile": mode, "error": repr(error)[:2000]}
            reference = next(
                (r for r in report["variants"] if r["objective"] == objective and "losses" in r),
                None,
            )
            if reference and "losses" in row:
                pairs = zip(row["losses"], reference["losses"], strict=True)
                row["max_loss_diff_vs_" + reference["compile"]] = round(
                    max(abs(a - b) for a, b in pairs), 5
                )
            report["variants"].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "losses"}), flush=True)
            runs.write_json(args.out, report)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
