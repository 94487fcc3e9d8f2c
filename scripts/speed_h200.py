"""Speed of the Hyena student against the strongest teacher on one GPU, in one run: decoding
(results/generation_h200.json), the operator and the whole model's forward
(results/benchmark_h200.json). GPT-2-124M shapes, bfloat16, random weights (speed does not depend
on them).

Both sides at their best: the teacher decodes over transformers' StaticCache with its one-token
step recorded as a CUDA graph, eager (attention kernels as dispatched, or with cuDNN's ruled out)
or compiled by torch.compile first (`teacher_graph_tok_s` is the fastest); the student decodes with
its whole recurrent step (all layers, MLPs, head) recorded as one CUDA graph, eager or compiled
(`recurrent_graph_tok_s` is the faster); on CUDA both sides are also timed with every GPT-2 MLP
of the step as one Triton kernel (`*_triton_mlp`, hyena_lite.mlp_kernel: the same help for both);
the attention block is replayed as a CUDA graph as the Hyena block is, and both blocks (and both
whole models) are also compiled by torch.compile (`*_compiled_*` columns); the goals take each
side's fastest variant. Every time is the median over blocks of back-to-back calls, with its
interquartile range (`hyena_lite.timing`).
`floor_tok_s` is a step's bytes to read (weights, plus the key-value cache or the modal state) over
the measured bandwidth of a large copy; `floor_speedup`, the ratio of the two floors, is the most
any student that reads its weights each step could gain at that row (2.16 at 8K, batch 1).

    PYTHONPATH=. python3 scripts/speed_h200.py --out $OUT          # on the GPU, under 6 minutes
    PYTHONPATH=. python3 scripts/speed_h200.py --only compiled --out $OUT  # the compiled rows
    PYTHONPATH=. python3 scripts/speed_h200.py --only training --out $OUT  # forward + backward
    PYTHONPATH=. python3 scripts/speed_h200.py --only training --lengths 4096,16384 --out $OUT
    PYTHONPATH=. python3 scripts/speed_h200.py --only decoding --pairs 1024x1,32768x1 \
        --variants compiled_graph_triton_blocks,compiled_graph_triton_fused_triton_blocks --out $OUT
    PYTHONPATH=. python3 scripts/speed_h200.py --smoke --out /tmp/x  # CPU, tiny shapes, seconds

Work runs in this order: the two decoding rows that the goals name, the operator rows, the model
forward, the other decoding rows, then (with --compile, the default on CUDA) the compiled operator
rows and the compiled model forward; no work starts that could end
after --budget-s seconds (what was skipped is listed in `skipped`); both files are rewritten after
every row, so a run that is killed still leaves its rows.
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend

from hyena_lite import fastpath, monarch_conv, runs, toeplitz_conv
from hyena_lite.cudagraph import record
from hyena_lite.decoding import fit_student
from hyena_lite.experiments.bench import CausalSelfAttention, gpt2_teacher, hyena_forward_bytes
from hyena_lite.experiments.generation import time_graph_decoding
from hyena_lite.fastdecode import (
    COMPILE_SETTINGS,
    STEP_HEADROOM,
    StudentGraphDecoder,
    TeacherGraphDecoder,
    cache_length,
)
from hyena_lite.generation import Decoder
from hyena_lite.models import convert
from hyena_lite.operator import HyenaOperator
from hyena_lite.provenance import provenance
from hyena_lite.timing import Timing, time_call

# attention kernels a teacher's step may record when cuDNN's is ruled out
NO_CUDNN = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


@dataclass
class Shapes:
    """The sizes a run measures."""

    layers: int = 12
    width: int = 768
    heads: int = 12
    vocab: int = 50257
    order: int = 16  # modal order of the recurrent student
    fit_taps: int = 4096  # filter taps the modal fit covers (speed does not depend on it)
    # (context, batch) rows of the decoding benchmark, most important (the goals') first
    decode: list[tuple[int, int]] = field(
        default_factory=lambda: [
            (8192, 1),
            (32768, 16),
            (8192, 16),
            (32768, 1),
            (1024, 1),
            (1024, 16),
            (8192, 64),
            (1024, 64),
        ]
    )
    lengths: list[int] = field(
        default_factory=lambda: [1024, 2048, 4096, 8192, 16384, 32768, 65536]
    )
    model_length: int = 8192
    # lengths of the compiled operator rows, most telling first (the goals name 4K and 16K)
    compiled_lengths: list[int] = field(
        default_factory=lambda: [4096, 16384, 65536, 1024, 8192, 32768, 2048]
    )
    check_tokens: int = 8192  # rows with context * batch up to this check logits against eager
    copy_mib: int = 2048


SMOKE = Shapes(
    layers=2,
    width=32,
    heads=2,
    vocab=97,
    order=4,
    fit_taps=64,
    decode=[(48, 1), (96, 2), (32, 2)],
    lengths=[64, 128],
    model_length=64,
    compiled_lengths=[128, 64],
    check_tokens=1024,
    copy_mib=4,
)


class Run:
    """The output files, the time budget and the timing settings of one run."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args, self.device, self.start = args, device, time.perf_counter()
        self.cuda = device.type == "cuda"
        self.compile = args.compile if args.compile is not None else self.cuda
        self.timing = dict(blocks=3, block_s=0.002, max_calls=5) if args.smoke else {}
        command = shlex.join(["python3", "scripts/speed_h200.py", *sys.argv[1:]])
        meta = provenance(command)
        out = Path(args.out)
        self.paths = {
            "generation": out / "generation_h200.json",
            "benchmark": out / "benchmark_h200.json",
        }
        if args.only == "training":
            self.paths = {"training": out / "training_h200.json"}
        if args.only == "operator":
            self.paths = {"benchmark": out / "operator_h200.json"}
        self.results: dict[str, dict[str, Any]] = {name: dict(meta) for name in self.paths}
        self.skipped: list[str] = []
        self.students: dict[tuple[int, str], StudentGraphDecoder] = {}  # per batch: graphs reused
        for results in self.results.values():
            results["skipped"] = self.skipped

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, what: str, need_s: float = 10.0) -> bool:
        """Whether the budget leaves the `need_s` seconds that `what` may take; if not, list it as
        skipped."""
        if self.elapsed() + (0 if self.args.smoke else need_s) <= self.args.budget_s:
            return True
        self.skipped.append(what)
        return False

    def save(self) -> None:
        if "training" in self.results:
            self.results["training"]["goals"] = training_goals(self.results["training"]["rows"])
            for name, path in self.paths.items():
                self.results[name]["elapsed_s"] = round(self.elapsed(), 1)
                runs.write_json(path, self.results[name])
            return
        if "generation" in self.results:  # not with --only operator
            rows = self.results["generation"]["rows"]
            self.results["generation"]["goals"] = decoding_goals(rows)
        benchmark = self.results["benchmark"]
        benchmark["goals"] = operator_goals(
            benchmark.get("operator", {}).get("rows", []),
            benchmark.get("model", {}).get("rows", []),
        )
        for name, path in self.paths.items():
            self.results[name]["elapsed_s"] = round(self.elapsed(), 1)
            runs.write_json(path, self.results[name])

    def time(self, fn: Callable[[], Any], reset: Callable[[], None] | None = None) -> Timing:
        return time_call(fn, reset, **self.timing)

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def peak_reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mb(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2**20 if self.cuda else None


def _goal(value: float | None, target: float, higher: bool = True) -> dict[str, Any]:
    """A goal's measured value, its target, and whether it is met (None: not measured)."""
    met = None if value is None else (value >= target if higher else value <= target)
    return {"value": value, "target": target, "met": met}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _from(rows: list[dict[str, Any]], length: int) -> list[dict[str, Any]]:
    """The rows a goal "from `length` up" is judged on: those of L >= length, or none where
    `length` itself was not timed (a run from a longer length cannot meet or miss it)."""
    if not any(r["L"] == length for r in rows):
        return []
    return [r for r in rows if r["L"] >= length]


def decoding_goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The decoding goals of issue 16, from the rows measured so far."""
    at = {(r["context"], r["batch"]): r for r in rows}
    b1, b16 = at.get((8192, 1), {}), at.get((32768, 16), {})
    return {
        "speedup_8k_batch1 >= 2": _goal(b1.get("speedup"), 2.0),
        "speedup_32k_batch16 >= 5": _goal(b16.get("speedup"), 5.0),
        "recurrent_floor_ratio_batch1 <= 3 (worst context)": _goal(
            max(
                (
                    r["recurrent_floor_ratio"]
                    for r in rows
                    if r["batch"] == 1 and r.get("recurrent_floor_ratio")
                ),
                default=None,
            ),
            3.0,
            higher=False,
        ),
    }


VARIANT_TOLERANCE = 0.02  # a variant's output this far from the plain forward does not count


def _accurate(row: dict[str, Any], key: str) -> bool:
    """Whether the variant timed as `key` (hyena_NAME_graph_ms) computed the block: its relative
    error, where the row records one, is a finite number within VARIANT_TOLERANCE (a NaN stored
    as null is not)."""
    name = key.removesuffix("_ms").removesuffix("_graph")
    if f"{name}_rel_err" not in row:
        return True
    error = row[f"{name}_rel_err"]
    return error is not None and math.isfinite(error) and error <= VARIANT_TOLERANCE


def _fastest(row: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    """The smallest of the measured times `keys` of a row (a side at its best), or None; variants
    whose output was wrong are left out."""
    return min((row[k] for k in keys if row.get(k) and _accurate(row, k)), default=None)


# each side's variants: recorded as a CUDA graph (or eager where recording failed), compiled;
# Hyena's also with the matrix-product convolutions (FastPath.monarch, 1K-4K), with the direct
# block-Toeplitz ones (FastPath.toeplitz, up to 8K), with float16 FFTs (FastPath.half_fft) and
# with packed inverse FFTs (FastPath.packed_inverse)
ATTN_FORWARD = ("attn_graph_ms", "attn_ms", "attn_compiled_graph_ms", "attn_compiled_ms")
HYENA_FORWARD = (
    "hyena_ms",
    "hyena_compiled_graph_ms",
    "hyena_compiled_ms",
    "hyena_monarch_graph_ms",
    "hyena_toeplitz_graph_ms",
    "hyena_half_fft_graph_ms",
    "hyena_packed_inverse_graph_ms",
)
# a variant that moves fewer bytes is held to its own bound (the float16 FFT chain's)
OWN_BOUNDS = {"hyena_half_fft_graph_ms": "hyena_half_fft_bound_ms"}
ATTN_FWDBWD = ("attn_fwdbwd_ms", "attn_compiled_fwdbwd_ms")
HYENA_FWDBWD = ("hyena_fwdbwd_ms", "hyena_compiled_fwdbwd_ms")


def operator_goals(rows: list[dict[str, Any]], model: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator, training and model goals of issue 16 (worst case over the lengths named),
    each side at its best measured variant, from the rows measured so far."""

    def worst(mine: tuple[str, ...], theirs: tuple[str, ...], from_length: int) -> float | None:
        ratios = [_ratio(_fastest(r, mine), _fastest(r, theirs)) for r in _from(rows, from_length)]
        return max((x for x in ratios if x is not None), default=None)

    def nearest_bound(row: dict[str, Any]) -> float | None:
        """The Hyena forward's smallest time over its own bandwidth bound, over the variants."""
        ratios = [
            _ratio(row[key], row.get(OWN_BOUNDS.get(key, ""), row.get("hyena_bound_ms")))
            for key in HYENA_FORWARD
            if row.get(key) and _accurate(row, key)
        ]
        return min((x for x in ratios if x is not None), default=None)

    bound_ratios = [nearest_bound(r) for r in _from(rows, 16384)]
    at_8k = next((r for r in model if r["L"] == 8192), {})

    def tokens_per_s(side: str) -> float | None:
        keys = (f"{side}_tokens_per_s", f"{side}_compiled_tokens_per_s")
        return max((at_8k[k] for k in keys if at_8k.get(k)), default=None)

    return {
        "hyena_ms / attention_ms from 4K <= 1": _goal(
            worst(HYENA_FORWARD, ATTN_FORWARD, 4096), 1.0, False
        ),
        "hyena_ms / hyena_bound_ms from 16K <= 1.5": _goal(
            max((x for x in bound_ratios if x is not None), default=None), 1.5, False
        ),
        "hyena / attention forward+backward from 16K <= 1 (each side's best variant)": _goal(
            worst(HYENA_FWDBWD, ATTN_FWDBWD, 16384), 1.0, False
        ),
        "student / teacher forward tokens/s at 8K >= 1": _goal(
            _ratio(tokens_per_s("student"), tokens_per_s("teacher")), 1.0
        ),
    }


def bandwidth_gbs(run: Run, mib: int) -> dict[str, float]:
    """Bandwidth of a large device copy, bytes read plus written per second (GB/s), median and
    IQR."""
    src = torch.randn(mib * 2**18, device=run.device)
    dst = torch.empty_like(src)
    timing = run.time(lambda: dst.copy_(src))
    moved = 2 * src.numel() * src.element_size()
    return {
        "copy_gbs": moved / (timing.median_ms * 1e-3) / 1e9,
        "copy_ms": timing.median_ms,
        "copy_iqr_ms": timing.iqr_ms,
        "copy_mib": mib,
    }


# ---------------------------------------------------------------------------------- decoding
def _best(row: dict[str, Any], side: str, variants: list[str]) -> None:
    """Name the fastest measured variant of a side (`{side}_best`) and copy its tok_s, ms, iqr_ms,
    state_mb and peak_mb to `{side}_graph_*`: the side at its best."""
    measured = [(row[f"{side}_{v}_tok_s"], v) for v in variants if row.get(f"{side}_{v}_tok_s")]
    if measured:
        _, variant = max(measured)
        row[f"{side}_best"] = variant
        for key in ("tok_s", "ms", "iqr_ms", "state_mb", "peak_mb"):
            row[f"{side}_graph_{key}"] = row.get(f"{side}_{variant}_{key}")


def _references(
    teacher: nn.Module, student: nn.Module, fits: dict, ids: torch.Tensor, token: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits after prompt + token of the teacher (full forward) and of the student (eager
    recurrent decoding)."""
    with torch.no_grad():
        full = torch.cat([ids, token], dim=1)
        teacher_logits = teacher(full, use_cache=False, logits_to_keep=1).logits[:, -1]
        with Decoder(student, "recurrent", fits=fits) as decoder:
            decoder.prefill(ids)
            student_logits = decoder.step(token)
    return teacher_logits, student_logits


class _FixedMixer(nn.Module):
    """A stand-in for a Hyena step in the ceiling rows: no mixer at all (its block adds zeros), or
    the operator's two projections alone (in_proj, then out_proj of its first D channels), with
    no mixing over time."""

    def __init__(self, op: HyenaOperator | None) -> None:
        super().__init__()
        self.op = op

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        hidden = args[0] if args else kwargs["hidden_states"]
        if self.op is None:
            return torch.zeros_like(hidden), None
        return self.op.out_proj(self.op.in_proj(hidden)[..., : self.op.d_model]), None


class _CeilingDecoder(StudentGraphDecoder):
    """The student's graph step with every Hyena step replaced by a `_FixedMixer`: how fast any
    mixer could make a step of these shapes, the rest of the model (embeddings, norms, MLPs, head)
    being what it is."""

    def __init__(self, student: nn.Module, fits: dict, batch: int, projections: bool, **kw) -> None:
        super().__init__(student, fits, batch, **kw)
        self.mixers = {
            i: _FixedMixer(step.op if projections else None) for i, step in self.steps.items()
        }


CEILINGS = {"no_mixer": False, "projections_only": True}  # name -> keeps the projections


def ceilings(
    run: Run,
    student: nn.Module,
    fits: dict,
    ids: torch.Tensor,
    token: torch.Tensor,
    row: dict[str, Any],
    variant: str,
) -> None:
    """The ceiling columns of a batch-1 decoding row: the step time of the student's model with no
    mixer and with the Hyena projections only, timed as the student's `variant`, and the speed-up
    over the strongest teacher that each would give (no mixer can beat it)."""
    for name, projections in CEILINGS.items():
        key = (row["batch"], f"ceiling_{name}_{variant}")
        if not run.allows(f"ceiling {name} context {row['context']}", 60.0):
            continue
        try:
            if key not in run.students:
                run.students[key] = _CeilingDecoder(
                    student,
                    fits,
                    row["batch"],
                    projections,
                    compile=compile_of(variant),
                    graph=run.cuda,
                    # the ceilings swap the mixers of the model's forward, which the block-by-block
                    # step does not run: its MLP kernels without the norms stand in
                    mlp_kernel="triton" if "triton_blocks" in variant else mlp_kernel_of(variant),
                )
            measured = time_graph_decoding(run.students[key], ids, token, None, None, **run.timing)
            row[f"ceiling_{name}_ms"] = measured["ms"]
            row[f"ceiling_{name}_iqr_ms"] = measured["iqr_ms"]
            row[f"ceiling_{name}_tok_s"] = measured["tok_s"]
            row[f"speedup_ceiling_{name}"] = _ratio(
                measured["tok_s"], row.get("teacher_graph_tok_s")
            )
        except Exception as error:  # noqa: BLE001  a failure is a result to report, not a crash
            row[f"ceiling_{name}_error"] = f"{type(error).__name__}: {error}"[:500]
        run.free()


SEARCHED = ("tuned", "autotune")  # compile settings that time kernels while compiling: slower


def compile_of(variant: str) -> bool | str:
    """The decoders' `compile` for a variant's name: False (eager_*), a setting of
    hyena_lite.fastdecode.COMPILE_SETTINGS (compiled_tuned_*, compiled_autotune_*), else True."""
    if not variant.startswith("compiled"):
        return False
    setting = variant.split("_")[1]
    return setting if setting in COMPILE_SETTINGS else True


def mlp_kernel_of(variant: str) -> str:
    """The decoders' `mlp_kernel` for a variant's name: "triton" (every GPT-2 MLP of the step one
    Triton kernel, hyena_lite.mlp_kernel) for *_triton_mlp, "triton_blocks" (the step written
    block by block, norms inside the Triton kernels, hyena_lite.block_steps) for *_triton_blocks
    and its variants (*_serial, *_split), else "torch"."""
    if variant.endswith("_triton_mlp"):
        return "triton"
    return "triton_blocks" if "_triton_blocks" in variant else "torch"


def attention_of(variant: str) -> str:
    """The teacher's `attention` (hyena_lite.decode_attention.ATTENTIONS) for a variant's name:
    "split" for *_split (the Triton kernel split over the keys), else "sdpa"."""
    return "split" if variant.endswith("_split") else "sdpa"


def pdl_of(variant: str) -> bool | None:
    """The decoders' `pdl` for a variant's name: False for *_serial (every kernel waits for the one
    before to end before it starts), else None (programmatic dependent launches where the GPU has
    them)."""
    return False if variant.endswith("_serial") else None


def decoding(
    run: Run,
    shapes: Shapes,
    teacher: nn.Module,
    student: nn.Module,
    fits: dict,
    bandwidth: float,
    pairs: list[tuple[int, int]],
    compiled_only: bool = False,
) -> None:
    """The decoding rows of `pairs` (context, batch): teacher and student, each recorded eagerly
    and (if asked) compiled first (`compiled_only`: only compiled)."""
    rows = run.results["generation"]["rows"]
    # teacher: recorded as dispatched, recorded with cuDNN attention ruled out, compiled first
    teacher_variants = {"eager_graph": None, "eager_graph_no_cudnn": NO_CUDNN}
    # student variant -> (Triton kernel, channels per program: None = channels_per_program's)
    student_variants: dict[str, tuple[str, int | None]] = {"eager_graph": ("torch", None)}
    if compiled_only:
        teacher_variants, student_variants = {}, {}
    if run.compile or compiled_only:
        teacher_variants["compiled_graph"] = None
        student_variants["compiled_graph"] = ("torch", None)
        triton = run.cuda and importlib.util.find_spec("triton") is not None
        if triton and not compiled_only:
            # each mixer one Triton kernel: between the projections, with the input projection,
            # with both (the whole mixer); the last also with 8 and 32 channels per program
            for kernel in ("triton", "triton_in_proj", "triton_fused"):
                student_variants[f"compiled_graph_{kernel}"] = (kernel, None)
            for block in (8, 32):
                student_variants[f"compiled_graph_triton_fused_c{block}"] = ("triton_fused", block)
        if triton and compiled_only:  # the best Triton mixer of the full runs
            student_variants["compiled_graph_triton_fused"] = ("triton_fused", None)
        if triton:  # every MLP one Triton kernel as well, on both sides alike
            teacher_variants["compiled_graph_triton_mlp"] = None
            student_variants["compiled_graph_triton_fused_triton_mlp"] = ("triton_fused", None)
            # and the steps written block by block, norms inside the Triton kernels, with
            # programmatic dependent launches and without
            for suffix in ("triton_blocks", "triton_blocks_serial"):
                teacher_variants[f"compiled_graph_{suffix}"] = None
                student_variants[f"compiled_graph_triton_fused_{suffix}"] = ("triton_fused", None)
            # the teacher's block step with the split Triton attention over its cache
            teacher_variants["compiled_graph_triton_blocks_split"] = None
        for setting in ("tuned", "autotune"):  # both sides under gpt-fast's inductor settings
            teacher_variants[f"compiled_{setting}_graph"] = None
            student_variants[f"compiled_{setting}_graph"] = ("torch", None)
        if triton:
            student_variants["compiled_tuned_graph_triton_fused"] = ("triton_fused", None)
    chosen = run.args.variants
    unknown = sorted((chosen or set()) - set(teacher_variants) - set(student_variants))
    if unknown:
        known = ", ".join(sorted(set(teacher_variants) | set(student_variants)))
        raise SystemExit(f"--variants names no such variant: {', '.join(unknown)}; known: {known}")
    if chosen:  # --variants: those names alone, on either side
        teacher_variants = {k: v for k, v in teacher_variants.items() if k in chosen}
        student_variants = {k: v for k, v in student_variants.items() if k in chosen}
    need = {"eager_graph": 15.0, "eager_graph_no_cudnn": 15.0}  # seconds
    for v in student_variants | teacher_variants:
        need[v] = 150.0 if compile_of(v) in SEARCHED else 60.0 if compile_of(v) else need[v]
    students = run.students
    for context, batch in pairs:
        if not run.allows(f"decoding context {context} batch {batch}"):
            continue
        row: dict[str, Any] = {"context": context, "batch": batch}
        rows.append(row)
        generator = torch.Generator(run.device).manual_seed(context + batch)
        ids = torch.randint(
            0, shapes.vocab, (batch, context + 1), device=run.device, generator=generator
        )
        ids, token = ids[:, :-1], ids[:, -1:]
        check = context * batch <= shapes.check_tokens
        references = _references(teacher, student, fits, ids, token) if check else (None, None)
        for variant, backends in teacher_variants.items():
            if not run.allows(f"teacher {variant} context {context} batch {batch}", need[variant]):
                continue
            prefix = f"teacher_{variant}"
            try:
                decoder = TeacherGraphDecoder(
                    teacher,
                    batch,
                    cache_length(context),
                    compile=compile_of(variant),
                    graph=run.cuda,
                    mlp_kernel=mlp_kernel_of(variant),
                    pdl=pdl_of(variant),
                    attention=attention_of(variant),
                )
                measured = time_graph_decoding(
                    decoder, ids, token, references[0], backends, **run.timing
                )
                row.update({f"{prefix}_{key}": value for key, value in measured.items()})
                row["teacher_read_mb"] = decoder.read_bytes(context) / 2**20
                row["teacher_floor_tok_s"] = batch * bandwidth * 1e9 / decoder.read_bytes(context)
            except Exception as error:  # noqa: BLE001  a failure is a result to report, not a crash
                row[f"{prefix}_error"] = f"{type(error).__name__}: {error}"[:500]
            decoder = None
            run.free()
        _best(row, "teacher", list(teacher_variants))
        for variant in student_variants:
            compiles = (batch, variant) not in students and variant.startswith("compiled")
            if not run.allows(
                f"student {variant} context {context} batch {batch}",
                need[variant if compiles else "eager_graph"],
            ):
                continue
            prefix = f"recurrent_{variant}"
            try:
                if (batch, variant) not in students:
                    students[batch, variant] = StudentGraphDecoder(
                        student,
                        fits,
                        batch,
                        compile=compile_of(variant),
                        graph=run.cuda,
                        kernel=student_variants[variant][0],
                        block_channels=student_variants[variant][1],
                        mlp_kernel=mlp_kernel_of(variant),
                        pdl=pdl_of(variant),
                    )
                decoder = students[batch, variant]
                measured = time_graph_decoding(
                    decoder, ids, token, references[1], None, **run.timing
                )
                row.update({f"{prefix}_{key}": value for key, value in measured.items()})
                if student_variants[variant][0] != "torch":  # the kernel's channels a program
                    first = next(iter(decoder.steps.values()))
                    row[f"{prefix}_block_channels"] = first.block_channels
                row["recurrent_read_mb"] = decoder.read_bytes() / 2**20
                row["recurrent_floor_tok_s"] = batch * bandwidth * 1e9 / decoder.read_bytes()
            except Exception as error:  # noqa: BLE001
                row[f"{prefix}_error"] = f"{type(error).__name__}: {error}"[:500]
            run.free()
        _best(row, "recurrent", list(student_variants))
        if batch == 1 and row.get("recurrent_best") and not chosen:
            ceilings(run, student, fits, ids, token, row, row["recurrent_best"])
        if row.get("teacher_graph_tok_s") and row.get("recurrent_graph_tok_s"):
            row["speedup"] = row["recurrent_graph_tok_s"] / row["teacher_graph_tok_s"]
        row["floor_speedup"] = _ratio(
            row.get("recurrent_floor_tok_s"), row.get("teacher_floor_tok_s")
        )
        for side in ("teacher", "recurrent"):
            if row.get(f"{side}_graph_tok_s") and row.get(f"{side}_floor_tok_s"):
                row[f"{side}_floor_ratio"] = row[f"{side}_floor_tok_s"] / row[f"{side}_graph_tok_s"]
        run.save()
        print(_summary(row), flush=True)


def _summary(row: dict[str, Any]) -> str:
    keys = [k for k in row if k in ("context", "batch", "L") or k.endswith(("tok_s", "_ms"))]
    return " ".join(
        f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}" for k in keys
    )


# ---------------------------------------------------------------------------------- operator
def _forward_timing(
    run: Run, block: nn.Module, x: torch.Tensor, graph: bool
) -> tuple[Timing, bool]:
    """The block's inference forward, replayed as a CUDA graph when asked and possible (warm-up
    calls first: the Hyena fast path compiles its fused kernels on a shape's second call)."""

    def forward() -> None:
        with torch.no_grad():
            block(x)

    if graph:
        try:
            replay = record(forward, run.device, warmup=3)[0].replay
            return run.time(replay), True
        except Exception as error:  # noqa: BLE001  fall back to timing it eagerly, and say so
            print(f"{type(block).__name__} not recorded at L={x.shape[1]}: {error}", flush=True)
    for _ in range(3):
        forward()
    return run.time(forward), False


def _fwdbwd_timing(run: Run, block: nn.Module, x: torch.Tensor, graphed: bool = False) -> Timing:
    """A training step's work: forward and backward with the input's gradient; with `graphed`,
    both captured as CUDA graphs by torch.cuda.make_graphed_callables (no host work per kernel)."""
    xg, grad = x.detach().requires_grad_(True), torch.randn_like(x)

    def step() -> None:
        block(xg).backward(grad)

    block.train()
    try:
        if graphed:  # replaces block.forward by the graphed one until the `finally` below
            torch.cuda.make_graphed_callables(block, (xg,))
        for _ in range(2):  # compiled kernels are built on the first calls, outside the timing
            step()
        return run.time(step)
    finally:
        block.__dict__.pop("forward", None)
        block.zero_grad(set_to_none=True)
        block.eval()


def _fast_error(op: HyenaOperator, x: torch.Tensor) -> float:
    """Relative error of the operator's fast forward (what was timed) against its plain one."""
    with torch.no_grad():
        fast = [op(x).float() for _ in range(3)]  # eager, then fused once the shape repeats
        op.fast = False
        plain = op(x).float()
        op.fast = True
    fastpath.clear_caches(op)
    return max(float((f - plain).norm() / plain.norm()) for f in fast)


def _time_variant(
    run: Run, hyena: HyenaOperator, x: torch.Tensor, setting: str, row: dict[str, Any]
) -> None:
    """Time Hyena's forward with the FastPath setting `setting` on (the matrix-product
    convolutions, the direct block-Toeplitz ones, float16 FFTs or packed inverse FFTs) into `row`
    as hyena_{setting}_graph_ms, with its error against the plain forward, or the error that
    stopped it."""
    name, before = f"hyena_{setting}", getattr(hyena.fastpath, setting)
    setattr(hyena.fastpath, setting, True)
    try:
        timing, graphed = _forward_timing(run, hyena, x, True)
        row.update(timing.as_row(f"{name}_graph" if graphed else name))
        row[f"{name}_rel_err"] = _fast_error(hyena, x)
    except Exception as error:  # noqa: BLE001  a failure is a result to report
        row[f"{name}_error"] = f"{type(error).__name__}: {error}"[:500]
    setattr(hyena.fastpath, setting, before)
    fastpath.clear_caches(hyena)
    run.free()


def _blocks(run: Run, shapes: Shapes) -> tuple[torch.dtype, nn.Module, HyenaOperator]:
    """The operator rows' dtype (bf16 on CUDA) and their attention and Hyena blocks of width
    `shapes.width`, seeded alike, in eval mode."""
    dtype = torch.bfloat16 if run.cuda else torch.float32
    torch.manual_seed(0)
    attn = CausalSelfAttention(shapes.width, shapes.heads).to(run.device, dtype).eval()
    hyena = HyenaOperator(shapes.width, max(shapes.lengths)).to(run.device, dtype).eval()
    return dtype, attn, hyena


def operator(run: Run, shapes: Shapes, bandwidth: float) -> None:
    """Operator rows: attention and Hyena blocks of width `shapes.width`, batch 1, per length."""
    dtype, attn, hyena = _blocks(run, shapes)
    hyena.fastpath.cuda_graphs = False  # recorded whole, as the attention block is
    hyena.fastpath.packed_inverse = False  # irfft; the packed inverses (CUDA's default): a variant
    rows = run.results["benchmark"]["operator"]["rows"]
    for length in shapes.lengths:
        if not run.allows(f"operator L={length}", 20.0):
            continue
        x = torch.randn(1, length, shapes.width, device=run.device, dtype=dtype)
        row: dict[str, Any] = {"L": length, "batch": 1}
        rows.append(row)
        for name, block in (("attn", attn), ("hyena", hyena)):
            try:
                run.peak_reset()
                timing, graphed = _forward_timing(run, block, x, run.cuda)
                row.update(timing.as_row(f"{name}_graph" if graphed else name))
                row[f"{name}_peak_mb"] = run.peak_mb()
                row.update(_fwdbwd_timing(run, block, x).as_row(f"{name}_fwdbwd"))
            except torch.OutOfMemoryError as error:
                row[f"{name}_error"] = f"OutOfMemoryError: {str(error)[:200]}"
            fastpath.clear_caches(block)
            run.free()
        variants = {
            "monarch": monarch_conv.supports(length),
            "toeplitz": toeplitz_conv.supports(length),
            "half_fft": True,
            "packed_inverse": True,
        }
        for setting in (name for name, applies in variants.items() if run.cuda and applies):
            _time_variant(run, hyena, x, setting, row)
        if "hyena_graph_ms" in row:  # the column the goals name: Hyena's forward at its best
            row["hyena_ms"], row["hyena_iqr_ms"] = row["hyena_graph_ms"], row["hyena_graph_iqr_ms"]
        row["hyena_bytes"] = hyena_forward_bytes(
            shapes.width, length, 1, hyena.order, x.element_size()
        )
        row["hyena_bound_ms"] = row["hyena_bytes"] / (bandwidth * 1e9) * 1e3
        if "hyena_half_fft_graph_ms" in row:  # its float16 chain moves fewer bytes
            half_bytes = hyena_forward_bytes(
                shapes.width, length, 1, hyena.order, x.element_size(), fft_bytes=2
            )
            row["hyena_half_fft_bound_ms"] = half_bytes / (bandwidth * 1e9) * 1e3
        row["hyena_fast_rel_err"] = _fast_error(hyena, x)
        run.save()
        print(_summary(row), flush=True)


def _grad_error(op: HyenaOperator, x: torch.Tensor) -> float:
    """Largest relative error (norm) of the fused training path's input and parameter gradients
    against the plain path's, on one backward of the same random output gradient."""
    grads = []
    grad_out = torch.randn_like(x)
    for fast in (True, False):
        op.fast = fast
        xg = x.detach().requires_grad_(True)
        params = [xg, *op.parameters()]
        grads.append(torch.autograd.grad(op(xg), params, grad_out))
    op.fast = True
    fused, plain = grads
    return max(
        float((a.float() - b.float()).norm() / b.float().norm())
        for a, b in zip(fused, plain, strict=True)
    )


def training(run: Run, shapes: Shapes) -> None:
    """Forward + backward rows (a training step's work, input gradient included), batch 1, per
    length: the attention block, the Hyena block on its default training path
    (`hyena_lite.longconv`: one autograd node, hand-written backward, its element-wise work and
    long filters compiled on CUDA) with its inverse FFTs by irfft, on that path with them eager
    (`hyena_eager_*`, HYENA_LITE_TRAINING_KERNELS=0), with packed inverse FFTs (`hyena_packed_*`,
    FastPath.packed_inverse, the default on CUDA) and on the plain path (autograd through every
    op: `hyena_plain_*`),
    peak memory of each, and each fused variant's gradient error against the plain path. On CUDA
    also both blocks as `hyena_lite.training` trains them (`*_autocast_graph`: float32 weights and
    input under bf16 autocast, which runs the long filters' MLP in bf16 too), graphed."""
    dtype, attn, hyena = _blocks(run, shapes)
    autocast = {"attn": _Autocast(attn), "hyena": _Autocast(hyena)} if run.cuda else {}
    if autocast:  # its rows are named packed: say so rather than lean on CUDA's default
        autocast["hyena"].inner.fastpath.packed_inverse = True
    rows = run.results["training"]["rows"]
    for length in shapes.lengths:
        if not run.allows(f"training L={length}", 20.0):
            continue
        x = torch.randn(1, length, shapes.width, device=run.device, dtype=dtype)
        row: dict[str, Any] = {"L": length, "batch": 1}
        rows.append(row)
        variants = [
            ("attn", attn, True, True),
            ("hyena", hyena, True, True),
            ("hyena_eager", hyena, True, False),
            ("hyena_packed", hyena, True, True),
            ("hyena_plain", hyena, False, True),
        ]
        if run.cuda:  # both blocks' forward and backward as CUDA graphs
            variants += [
                ("attn_graph", attn, True, True),
                ("hyena_graph", hyena, True, True),
                ("hyena_packed_graph", hyena, True, True),
                ("attn_autocast_graph", autocast["attn"], True, True),
                ("hyena_packed_autocast_graph", autocast["hyena"], True, True),
            ]
        for name, block, fast, kernels in variants:
            hyena.fast, hyena.fastpath.training_kernels = fast, kernels
            hyena.fastpath.packed_inverse = name.startswith("hyena_packed")
            inputs = x.float() if isinstance(block, _Autocast) else x
            try:
                run.peak_reset()
                timing = _fwdbwd_timing(run, block, inputs, graphed=name.endswith("_graph"))
                row.update(timing.as_row(f"{name}_fwdbwd"))
                row[f"{name}_fwdbwd_peak_mb"] = run.peak_mb()
                if name in ("hyena", "hyena_eager", "hyena_packed"):
                    row[f"{name}_grad_rel_err"] = _grad_error(hyena, x)
                    hyena.zero_grad(set_to_none=True)
            except torch.OutOfMemoryError as error:
                row[f"{name}_error"] = f"OutOfMemoryError: {str(error)[:200]}"
            except RuntimeError as error:  # a capture that fails is recorded, not fatal
                if not name.endswith("_graph"):
                    raise
                row[f"{name}_error"] = f"RuntimeError: {str(error)[:300]}"
            run.free()
        hyena.fast, hyena.fastpath.training_kernels = True, True
        hyena.fastpath.packed_inverse = False
        run.save()
        print(_summary(row), flush=True)


class _Autocast(nn.Module):
    """A bf16 block's float32 copy called under bf16 autocast (its casts uncached, as CUDA graphs
    need): how `hyena_lite.training` runs a model, float32 master weights included."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(block).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, torch.bfloat16, cache_enabled=False):
            return self.inner(x)


def _trained_best(row: dict[str, Any], graph: str) -> float | None:
    """Hyena's fastest forward + backward in a training row (`graph`: "" or "_graph"): the default
    path, or the packed inverses where their gradients match the plain path's."""
    times = [row.get(f"hyena{graph}_fwdbwd_ms")]
    error = row.get("hyena_packed_grad_rel_err")
    if error is not None and math.isfinite(error) and error <= VARIANT_TOLERANCE:
        times.append(row.get(f"hyena_packed{graph}_fwdbwd_ms"))
    return min((t for t in times if t), default=None)


def training_goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The training goal of issue 16 from `training` rows: worst Hyena / attention forward +
    backward from 16K, eager, graphed, graphed under autocast, and each side's best graphed."""
    judged = _from(rows, 16384)
    autocast = ("hyena_packed_autocast_graph_fwdbwd_ms", "attn_autocast_graph_fwdbwd_ms")

    def worst(hyena: Callable[[dict], float | None], attn: Callable[[dict], float | None]) -> dict:
        ratios = [_ratio(hyena(r), attn(r)) for r in judged]
        return _goal(max((x for x in ratios if x is not None), default=None), 1.0, False)

    return {
        "hyena / attention forward+backward from 16K <= 1": worst(
            lambda r: _trained_best(r, ""), lambda r: r.get("attn_fwdbwd_ms")
        ),
        "the same, both as CUDA graphs": worst(
            lambda r: _trained_best(r, "_graph"), lambda r: r.get("attn_graph_fwdbwd_ms")
        ),
        "the same, graphed, float32 weights under bf16 autocast": worst(
            lambda r: r.get(autocast[0]), lambda r: r.get(autocast[1])
        ),
        "the same, graphed, each side's best variant": worst(
            lambda r: min(
                filter(None, (_trained_best(r, "_graph"), r.get(autocast[0]))), default=None
            ),
            lambda r: _fastest(r, ("attn_graph_fwdbwd_ms", autocast[1])),
        ),
    }


def model_forward(run: Run, shapes: Shapes, teacher: nn.Module, student: nn.Module) -> None:
    """Whole-model forward tokens/s (logits at every position, batch 1) at `shapes.model_length`,
    each model recorded as a CUDA graph where possible."""
    length = shapes.model_length
    if not run.allows(f"model forward L={length}", 30.0):
        return
    ids = torch.randint(0, shapes.vocab, (1, length), device=run.device)
    row: dict[str, Any] = {"L": length, "batch": 1}
    for op in (m for m in student.modules() if isinstance(m, HyenaOperator)):
        op.fastpath.cuda_graphs = False  # the whole model is recorded instead
    for name, model in (("teacher", teacher), ("student", student)):
        block = _ModelCall(model, ids)
        try:
            run.peak_reset()
            timing, graphed = _forward_timing(run, block, ids, run.cuda)
            row.update(timing.as_row(name))
            row[f"{name}_graph"] = graphed
            row[f"{name}_tokens_per_s"] = length / (timing.median_ms * 1e-3)
            row[f"{name}_peak_mb"] = run.peak_mb()
        except torch.OutOfMemoryError as error:
            row[f"{name}_error"] = f"OutOfMemoryError: {str(error)[:200]}"
        fastpath.clear_caches(model)
        run.free()
    run.results["benchmark"]["model"]["rows"].append(row)
    run.save()
    print(_summary(row), flush=True)


def _row_at(rows: list[dict[str, Any]], length: int) -> dict[str, Any]:
    """The row of `rows` for length L (appended if there is none yet)."""
    row = next((r for r in rows if r["L"] == length), None)
    if row is None:
        row = {"L": length, "batch": 1}
        rows.append(row)
    return row


def compiled_operator(run: Run, shapes: Shapes, bandwidth: float, lengths: list[int]) -> None:
    """Both blocks compiled by torch.compile, the same treatment on each side: the inference
    forward (Hyena: `fastpath.compiled_forward`; attention: the module) recorded as a CUDA graph,
    and forward + backward (Hyena: `FastPath.compile_training`; attention: the module compiled),
    at `lengths`, batch 1; columns `{attn,hyena}_compiled_graph_ms` and
    `{attn,hyena}_compiled_fwdbwd_ms`."""
    dtype, attn, hyena = _blocks(run, shapes)
    hyena.fastpath.compile_training = True  # forward + backward: the plain forward compiled whole
    compiled_attn = torch.compile(attn, dynamic=False)
    forwards = {
        "attn": compiled_attn,
        "hyena": lambda x: fastpath.compiled_forward(hyena, x),
    }
    trainers = {"attn": (compiled_attn, attn), "hyena": (hyena, hyena)}
    rows = run.results["benchmark"]["operator"]["rows"]
    for length in lengths:
        if not run.allows(f"compiled operator L={length}", 45.0):
            continue
        x = torch.randn(1, length, shapes.width, device=run.device, dtype=dtype)
        row = _row_at(rows, length)
        for name in ("hyena", "attn"):
            prefix = f"{name}_compiled"
            try:
                start = time.perf_counter()
                with torch.no_grad():
                    reference = (hyena if name == "hyena" else attn)(x).float()
                    compiled = forwards[name](x).float()  # compiles this shape
                row[f"{prefix}_rel_err"] = float((compiled - reference).norm() / reference.norm())
                run.peak_reset()
                timing, graphed = _forward_timing(run, _Call(forwards[name]), x, run.cuda)
                row.update(timing.as_row(f"{prefix}_graph" if graphed else prefix))
                row[f"{prefix}_peak_mb"] = run.peak_mb()
                call, module = trainers[name]
                module.train()
                call(x.detach().requires_grad_(True)).sum().backward()  # compiles the backward
                row.update(_fwdbwd_timing(run, _Call(call, module), x).as_row(f"{prefix}_fwdbwd"))
                row[f"{prefix}_setup_s"] = time.perf_counter() - start
            except Exception as error:  # noqa: BLE001  a failure is a result to report, not a crash
                row[f"{prefix}_error"] = f"{type(error).__name__}: {error}"[:500]
            for module in (attn, hyena):
                module.zero_grad(set_to_none=True)
                module.eval()
            fastpath.clear_caches(hyena)
            run.free()
        row.setdefault(
            "hyena_bound_ms",
            hyena_forward_bytes(shapes.width, length, 1, hyena.order, x.element_size())
            / (bandwidth * 1e9)
            * 1e3,
        )
        run.save()
        print(_summary(row), flush=True)


class _Call(nn.Module):
    """A callable as a block for the timing helpers (`module`: whose train/eval mode it follows)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], module: nn.Module | None = None):
        super().__init__()
        self.fn, self.inner = fn, module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def compiled_model_forward(
    run: Run, shapes: Shapes, teacher: nn.Module, student: nn.Module
) -> None:
    """Whole-model forward tokens/s at `shapes.model_length`, batch 1, each model compiled whole by
    torch.compile (the student's Hyena operators traced through `fastpath.compiled_forward`) and
    recorded as a CUDA graph; columns `{teacher,student}_compiled_*` of the model row."""
    length = shapes.model_length
    if not run.allows(f"compiled model forward L={length}", 90.0):
        return
    ids = torch.randint(0, shapes.vocab, (1, length), device=run.device)
    rows = run.results["benchmark"]["model"]["rows"]
    row = _row_at(rows, length)
    for op in (m for m in student.modules() if isinstance(m, HyenaOperator)):
        op.fastpath.cuda_graphs = False  # the whole model is recorded instead
    for name, model in (("teacher", teacher), ("student", student)):
        prefix = f"{name}_compiled"
        if not run.allows(f"{prefix} model forward L={length}", 45.0):
            continue
        try:
            start = time.perf_counter()
            compiled = torch.compile(_ModelCall(model, ids), dynamic=False)
            with torch.no_grad():
                reference = model(ids, use_cache=False).logits.float()
                logits = compiled(ids).float()  # compiles
            row[f"{prefix}_max_logit_diff"] = float((logits - reference).abs().max())
            run.peak_reset()
            timing, graphed = _forward_timing(run, compiled, ids, run.cuda)
            row.update(timing.as_row(prefix))
            row[f"{prefix}_graph"] = graphed
            row[f"{prefix}_tokens_per_s"] = length / (timing.median_ms * 1e-3)
            row[f"{prefix}_peak_mb"] = run.peak_mb()
            row[f"{prefix}_setup_s"] = time.perf_counter() - start
        except Exception as error:  # noqa: BLE001
            row[f"{prefix}_error"] = f"{type(error).__name__}: {error}"[:500]
        fastpath.clear_caches(model)
        run.free()
    run.save()
    print(_summary(row), flush=True)


class _ModelCall(nn.Module):
    """A causal LM's forward on fixed ids (logits at every position, no cache) as a block."""

    def __init__(self, model: nn.Module, ids: torch.Tensor) -> None:
        super().__init__()
        self.model, self.ids = model, ids

    def forward(self, _x: torch.Tensor) -> torch.Tensor:
        return self.model(self.ids, use_cache=False).logits


# ---------------------------------------------------------------------------------- main
def print_compiled_table(run: Run) -> None:
    """A short table of the compiled rows: operator times (ms) per length, model tokens/s, and the
    compiled decoding steps."""
    columns = [
        "attn_compiled_graph_ms",
        "hyena_compiled_graph_ms",
        "attn_compiled_fwdbwd_ms",
        "hyena_compiled_fwdbwd_ms",
        "hyena_bound_ms",
    ]
    print("L".rjust(6), *(c.removesuffix("_ms").rjust(24) for c in columns))
    benchmark = run.results["benchmark"]
    for row in sorted(benchmark["operator"]["rows"], key=lambda r: r["L"]):
        values = (row.get(c, row.get(c.replace("_graph", ""))) for c in columns)  # CPU: no graph
        cells = (f"{v:.4f}" if isinstance(v, float) else "-" for v in values)
        print(str(row["L"]).rjust(6), *(cell.rjust(24) for cell in cells))
    for row in benchmark["model"]["rows"]:
        print(
            f"model forward L={row['L']}: tokens/s teacher compiled "
            f"{row.get('teacher_compiled_tokens_per_s', 0):.0f}, student compiled "
            f"{row.get('student_compiled_tokens_per_s', 0):.0f}"
        )
    for row in run.results["generation"]["rows"]:
        print(
            f"decoding context {row['context']} batch {row['batch']}: tok/s teacher compiled "
            f"{row.get('teacher_compiled_graph_tok_s', 0):.0f}, student compiled "
            f"{row.get('recurrent_compiled_graph_tok_s', 0):.0f}"
        )
    print("skipped:", run.skipped)


def student_fits(run: Run, shapes: Shapes, student: nn.Module) -> dict:
    """The student's modal fits for recurrent decoding (their time recorded as `fit_s`)."""
    start = time.perf_counter()
    fits = fit_student(student, shapes.order, length=shapes.fit_taps, progress=False).fits
    run.results["generation"]["fit_s"] = time.perf_counter() - start
    return fits


def _pair_list(text: str) -> list[tuple[int, int]]:
    """--pairs: comma-separated context x batch pairs such as 1024x1,32768x1."""
    try:
        pairs = [tuple(int(n) for n in part.split("x")) for part in text.split(",")]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated context x batch pairs such as 1024x1,32768x1, got {text!r}"
        )
    return pairs


def _length_list(text: str) -> list[int]:
    """--lengths: comma-separated positive integers."""
    try:
        lengths = [int(part) for part in text.split(",")]
    except ValueError:
        lengths = []
    if not lengths or min(lengths) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated sequence lengths such as 4096,16384, got {text!r}"
        )
    return lengths


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the two JSON files")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, in seconds")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=330.0,
        help="start no work that could end after this many seconds (model building included)",
    )
    parser.add_argument(
        "--only",
        choices=["compiled", "training", "decoding", "operator"],
        help="compiled: only the torch.compile'd operator rows, model forward and decoding rows "
        "(the teacher's and the student's steps compiled); training: only forward + backward "
        "rows, the Hyena block's default (fused) and plain training paths (training_h200.json); "
        "decoding: only the compiled decoding row of the first goal (8K, batch 1) with its "
        "ceiling columns; operator: only the operator rows (forward as CUDA graphs, forward + "
        "backward) in operator_h200.json",
    )
    parser.add_argument(
        "--variants",
        type=lambda text: set(text.split(",")),
        default=None,
        help="comma-separated decoding variants to time, of either side (e.g. "
        "compiled_graph_triton_mlp,compiled_graph_triton_fused_triton_mlp); the others and the "
        "ceiling columns are left out (default: all)",
    )
    parser.add_argument(
        "--pairs",
        type=_pair_list,
        default=None,
        help="the decoding rows to time, as context x batch pairs, the first two read as the "
        "goals' (default: the benchmark's eight; with --only decoding, 8192x1, the first goal's)",
    )
    parser.add_argument(
        "--lengths",
        type=_length_list,
        default=None,
        help="comma-separated sequence lengths of the operator and training rows, compiled ones "
        "included (default: 1K to 64K)",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time torch.compile'd steps (default: on CUDA)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(sys.argv[1:] if argv is None else argv)
    shapes = SMOKE if args.smoke else Shapes()
    if args.lengths:
        shapes = replace(shapes, lengths=args.lengths, compiled_lengths=args.lengths)
    if args.pairs:  # the decoding rows asked for, in that order
        shapes = replace(shapes, decode=args.pairs)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this benchmark is for one; run --smoke to check it on a CPU")
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    run = Run(args, device)
    precision = str(dtype).removeprefix("torch.")
    model = {
        "model": f"GPT-2 shapes: {shapes.layers} layers, width {shapes.width}, "
        f"{shapes.heads} heads, vocabulary {shapes.vocab}, random weights, {precision}; "
        "student: every attention -> Hyena order 2",
        "cuda_graphs": run.cuda,  # False (--smoke): the 'graph' variants ran eagerly
        "compiled": run.compile,
    }
    bw = bandwidth_gbs(run, shapes.copy_mib)
    if args.only == "training":
        run.results["training"].update(model, bandwidth=bw, rows=[])
        training(run, shapes)
        run.save()
        print(f"wrote {run.paths['training']} in {run.elapsed():.0f} s", flush=True)
        return 0
    for results in run.results.values():
        results.update(model, bandwidth=bw)
    run.results["benchmark"].update(operator={"rows": []}, model={"rows": []})
    if args.only == "operator":
        operator(run, shapes, bw["copy_gbs"])
        run.save()
        print(f"wrote {run.paths['benchmark']} in {run.elapsed():.0f} s", flush=True)
        return 0
    run.results["generation"].update(
        order=shapes.order, fit_taps=shapes.fit_taps, step_headroom=STEP_HEADROOM, rows=[]
    )
    run.save()
    longest = max(c for c, _ in shapes.decode) + STEP_HEADROOM + 1
    torch.manual_seed(0)
    teacher = gpt2_teacher(longest, shapes.layers, shapes.width, shapes.heads, shapes.vocab)
    teacher = teacher.to(device=device, dtype=dtype).eval()
    student = convert(teacher, init="fresh", l_max=longest).eval()
    first, rest = shapes.decode[:2], shapes.decode[2:]  # the goals name the first two rows
    lengths = shapes.compiled_lengths
    if args.only == "decoding":  # the batch-1 goal's row alone (or --pairs): teacher, student
        fits = student_fits(run, shapes, student)
        pairs = args.pairs or first[:1]
        decoding(run, shapes, teacher, student, fits, bw["copy_gbs"], pairs, compiled_only=True)
    elif args.only == "compiled":  # the goals' lengths, the model, the other lengths, decoding
        compiled_operator(run, shapes, bw["copy_gbs"], lengths[:3])
        compiled_model_forward(run, shapes, teacher, student)
        compiled_operator(run, shapes, bw["copy_gbs"], lengths[3:])
        if run.allows("compiled decoding (modal fit first)", 60.0):
            fits = student_fits(run, shapes, student)
            decoding(run, shapes, teacher, student, fits, bw["copy_gbs"], first, compiled_only=True)
        print_compiled_table(run)
    else:
        fits = student_fits(run, shapes, student)
        decoding(run, shapes, teacher, student, fits, bw["copy_gbs"], first)
        operator(run, shapes, bw["copy_gbs"])
        model_forward(run, shapes, teacher, student)
        decoding(run, shapes, teacher, student, fits, bw["copy_gbs"], rest)
        if run.compile:
            compiled_operator(run, shapes, bw["copy_gbs"], lengths)
            compiled_model_forward(run, shapes, teacher, student)
    run.save()
    print(f"wrote {', '.join(map(str, run.paths.values()))} in {run.elapsed():.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
