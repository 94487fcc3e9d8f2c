"""Where the GPU time goes, before fused kernels are written (issues 16 and 20): torch.profiler
(CUDA kernels, and the host's runtime calls) over three workloads on one GPU, in one JSON file.

- `decode`: one decoding step at context 8192, batch 1, GPT-2-124M shapes, bf16, random weights:
  the student's whole recurrent step as a CUDA graph (`StudentGraphDecoder`) and the teacher's
  static-cache step as a CUDA graph (`TeacherGraphDecoder`), each compiled by torch.compile first
  (`*_compiled_graph`, the fastest in scripts/speed_h200.py; --no-compile leaves them out) and not
  (`*_eager_graph`), and the student's step run eagerly (`student_eager`: its launches one by one).
  On CUDA, first the fastest steps of all: both written block by block, norms inside the Triton
  kernels (`*_triton_blocks`, hyena_lite.block_steps), then the student's with its mixers and MLPs
  as Triton kernels (`student_compiled_graph_triton_fused_triton_mlp`), the teacher's with its
  MLPs so (`teacher_compiled_graph_triton_mlp`).
- `operator`: the Hyena block's inference forward and forward + backward, and the attention
  block's, at L = 1K, 4K and 16K, batch 1, width 768, bf16, as scripts/speed_h200.py runs them
  (eagerly here, so that launches and host syncs show; the forward's CUDA-graph time is recorded
  beside); the Hyena block's sub-modules (filter generation, projections, short filter) are
  marked as ranges.
- `kd`: one knowledge-distillation step (the `transfer` recipe's KD stage: KL plus 0.5 x CE, AdamW,
  bf16 autocast through accelerate as `hyena_lite.training` runs it) of a random SmolLM2-135M-shaped
  teacher and its all-Hyena student, micro-batch 8 x 1024 (scripts/smollm2_h200.py's defaults):
  tokens/s, and the step split into teacher forward, student forward, loss, backward, checks
  (loss reduction, finite gradients) and optimizer, each range waiting for the GPU before it ends
  so that its kernels run inside it.

Per workload: wall time per call (median and IQR over blocks of calls, after warm-up, unprofiled),
host time per call, GPU busy time per call (the sum of kernel times) and its fraction of the wall
time, the union of kernel intervals and the span from first kernel start to last kernel end,
kernels, runtime calls (launches) and host syncs per call, the top kernels by total CUDA time and
the host's top operators by self time (the file's `notes` define each key). With --smoke
everything runs on the CPU with tiny shapes in seconds: CPU activities only, the "kernels" are then
aten ops by self CPU time.

    PYTHONPATH=. python3 scripts/profile_h200.py --out $OUT/profile_h200.json   # GPU, ~4 min
    PYTHONPATH=. python3 scripts/profile_h200.py --parts kd --out /tmp/p.json
    PYTHONPATH=. python3 scripts/profile_h200.py --smoke --out /tmp/p.json       # CPU, seconds

No work starts that could end after --budget-s seconds (what was skipped is listed in `skipped`);
the file is rewritten after every workload.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from hyena_lite import runs
from hyena_lite.provenance import provenance
from hyena_lite.teachers import SMOLLM2_SHAPES, SMOLLM2_TINY_SHAPES

PARTS = ("decode", "operator", "kd")
CALL = "profile_h200.call"  # the range around each profiled call
NAME_CHARS = 120
# host calls that wait for the GPU (aten::_local_scalar_dense is .item() and friends)
SYNC_NAMES = (
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
    "cudaEventSynchronize",
    "cudaMemcpy",
    "cuStreamSynchronize",
    "cuCtxSynchronize",
    "aten::_local_scalar_dense",
)
KD_PHASES = (
    "kd.teacher_forward",
    "kd.student_forward",
    "kd.loss",
    "kd.backward",
    "kd.checks",
    "kd.optimizer",
)


@dataclass
class Shapes:
    """The sizes a run profiles."""

    layers: int = 12
    width: int = 768
    heads: int = 12
    vocab: int = 50257
    context: int = 8192
    order: int = 16  # modal order of the recurrent student
    fit_taps: int = 4096  # filter taps the modal fit covers (speed does not depend on it)
    graph_steps: int = 50  # decoding steps profiled per graphed decoder
    eager_steps: int = 10
    lengths: tuple[int, ...] = (1024, 4096, 16384)
    hyena_l_max: int = 65536  # as scripts/speed_h200.py builds the block
    operator_calls: int = 10
    kd_model: dict[str, Any] = field(default_factory=lambda: dict(SMOLLM2_SHAPES))
    kd_batch: int = 8  # scripts/smollm2_h200.py --batch-size default
    kd_seq: int = 1024  # scripts/smollm2_h200.py --seq-len default
    kd_lr: float = 6e-4  # scripts/smollm2_h200.py --lr default (times the KD stage's lr_scale)
    kd_steps: int = 5  # timed steps
    kd_profiled: int = 3
    top: int = 15
    kd_top: int = 20
    timing: dict[str, Any] = field(default_factory=dict)  # hyena_lite.timing.time_call options


SMOKE = Shapes(
    layers=2,
    width=32,
    heads=2,
    vocab=97,
    context=48,
    order=4,
    fit_taps=64,
    graph_steps=3,
    eager_steps=2,
    lengths=(64, 128),
    hyena_l_max=256,
    operator_calls=2,
    kd_model=dict(SMOLLM2_TINY_SHAPES, num_hidden_layers=2),
    kd_batch=2,
    kd_seq=64,
    kd_steps=2,
    kd_profiled=1,
    top=15,
    kd_top=20,
    timing=dict(blocks=3, block_s=0.002, max_calls=5),
)


class Run:
    """The output file, the time budget and the device of one run."""

    def __init__(self, args: argparse.Namespace, shapes: Shapes) -> None:
        self.args, self.shapes, self.start = args, shapes, time.perf_counter()
        self.device = torch.device("cpu" if args.smoke else "cuda")
        self.cuda = self.device.type == "cuda"
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        self.compile = args.compile if args.compile is not None else self.cuda
        command = shlex.join(["python3", "scripts/profile_h200.py", *sys.argv[1:]])
        self.skipped: list[str] = []
        self.results: dict[str, Any] = {
            **provenance(command),
            "parts": args.parts,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "compiled": self.compile,
            "time_source": "cuda kernels" if self.cuda else "cpu aten ops, self time",
            "notes": NOTES,
            "skipped": self.skipped,
        }

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, what: str, need_s: float) -> bool:
        """Whether the budget leaves the `need_s` seconds that `what` may take; if not, list it as
        skipped."""
        if self.elapsed() + (0 if self.args.smoke else need_s) <= self.args.budget_s:
            return True
        self.skipped.append(what)
        print(f"skipped (budget): {what}", flush=True)
        return False

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def save(self) -> None:
        self.results["elapsed_s"] = round(self.elapsed(), 1)
        runs.write_json(self.args.out, self.results)


NOTES = {
    "wall_ms": "a call's wall time, unprofiled: median over blocks of back-to-back calls "
    "(hyena_lite.timing); kd: step_ms, the median step as training runs it",
    "busy_us_per_call": "sum of kernel (and memcpy/memset) durations per call; "
    "busy_fraction_of_wall = busy / wall",
    "union_us_per_call": "time per call with at least one kernel running (overlaps counted once)",
    "span_us_per_call": "first kernel start to last kernel end over all profiled calls, per call; "
    "idle_fraction = 1 - union / span: the GPU waiting between kernels",
    "host_us_per_call": "host time of a call as profiled (profiler overhead included)",
    "runtime_calls_per_call": "CUDA runtime/driver calls on the host inside calls (launches)",
    "syncs_per_call": "host calls inside calls that may wait for the GPU "
    "(aten::_local_scalar_dense is .item(), a wait only on a CUDA tensor)",
    "host_sync": "a cuda*/cu* synchronize or a device-to-host copy inside a call; kd leaves out "
    "the cudaDeviceSynchronize that ends each of its phases",
    "top_host_ops": "host operators and runtime calls by self CPU time per call",
    "phases": "kd: wall_ms, the phase's median wall time with the GPU drained at its end "
    "(unprofiled); gpu_ms, the kernels that started inside it (profiled), per step",
    "ranges": "operator: host time of the Hyena block's sub-modules and the kernels launched under "
    "them on the calling thread (the forward's; backward kernels run on autograd's thread)",
}


# ---------------------------------------------------------------------------------- profiling
def _device_time(avg: Any, own: bool = True) -> float:
    """An aggregated event's device time (us): its own, or with its children's (`own=False`),
    under this torch's attribute name (`device_*` since torch 2.4, `cuda_*` before)."""
    names = ("device_time_total", "cuda_time_total")
    for name in (f"self_{n}" for n in names) if own else names:
        value = getattr(avg, name, None)
        if value is not None:
            return float(value)
    return 0.0


def _is_annotation(event: Any, ranges: set[str]) -> bool:
    return event.name in ranges or bool(getattr(event, "is_user_annotation", False))


def profiled(run: Run, fn: Callable[[], Any], calls: int) -> profile:
    """Profile `calls` calls of fn, each inside the range CALL; the GPU drained before and after,
    outside the ranges."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if run.cuda else [])
    run.sync()
    with profile(activities=activities, record_shapes=False) as prof:
        for _ in range(calls):
            with record_function(CALL):
                fn()
        run.sync()
    return prof


class Windows:
    """The host time intervals (us) of one range's occurrences, for 'does this event lie
    inside' (the range's GPU-side copy, a CUDA user annotation, is left out)."""

    def __init__(self, events: Iterable[Any], name: str) -> None:
        spans = sorted(
            (e.time_range.start, e.time_range.end)
            for e in events
            if e.name == name and e.device_type == DeviceType.CPU
        )
        self.starts = [s for s, _ in spans]
        self.ends = [e for _, e in spans]

    def holds(self, t: float) -> bool:
        i = bisect.bisect_right(self.starts, t) - 1
        return i >= 0 and t <= self.ends[i]

    def mean_us(self) -> float:
        spans = [e - s for s, e in zip(self.starts, self.ends, strict=True)]
        return statistics.fmean(spans) if spans else 0.0


def _union_us(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of intervals."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def _device_events(events: list[Any], ranges: set[str]) -> list[Any]:
    return [e for e in events if e.device_type == DeviceType.CUDA and not _is_annotation(e, ranges)]


def kernel_table(
    prof: profile, run: Run, calls: int, top: int, ranges: set[str]
) -> tuple[list[dict[str, Any]], float]:
    """The top kernels (CUDA) or aten ops by self time (CPU): name, calls, total us, % of the busy
    time; and the busy time in all (us)."""
    rows = []
    for avg in prof.key_averages():
        if avg.key in ranges:
            continue
        if run.cuda and avg.device_type == DeviceType.CUDA:
            total = _device_time(avg)
        elif not run.cuda and avg.key.startswith("aten::"):
            total = float(avg.self_cpu_time_total)
        else:
            continue
        rows.append((total, avg.key, int(avg.count)))
    busy = sum(total for total, _, _ in rows)
    rows.sort(reverse=True)
    table = [
        {
            "name": name[:NAME_CHARS],
            "calls": count,
            "calls_per_call": round(count / calls, 2),
            "total_us": round(total, 1),
            "pct": round(100 * total / busy, 2) if busy else 0.0,
        }
        for total, name, count in rows[:top]
    ]
    return table, busy


def summarize(
    prof: profile,
    run: Run,
    calls: int,
    top: int,
    wall_ms: float,
    ranges: Iterable[str] = (),
    own_syncs: Iterable[str] = (),
) -> dict[str, Any]:
    """What a profile of `calls` calls says per call (see NOTES); `wall_ms`: a call's unprofiled
    wall time."""
    names = {CALL, *ranges}
    events = list(prof.events())
    inside = Windows(events, CALL)
    table, busy = kernel_table(prof, run, calls, top, names)
    out: dict[str, Any] = {
        "calls_profiled": calls,
        "host_us_per_call": round(inside.mean_us(), 1),
        "busy_us_per_call": round(busy / calls, 1),
        "busy_fraction_of_wall": round(busy / calls / (wall_ms * 1e3), 3),
    }
    device = _device_events(events, names)
    if run.cuda and not device:
        out["warning"] = "no kernel was traced (CUPTI saw none of this workload's kernels)"
    if run.cuda:
        copies = [e for e in device if e.name.startswith(("Memcpy", "Memset"))]
        intervals = [(e.time_range.start, e.time_range.end) for e in device]
        union = _union_us(intervals)
        span = max(e for _, e in intervals) - min(s for s, _ in intervals) if intervals else 0.0
        out.update(
            kernels_per_call=round((len(device) - len(copies)) / calls, 1),
            memcpy_memset_per_call=round(len(copies) / calls, 2),
            dtoh_copies_per_call=round(sum("DtoH" in e.name for e in copies) / calls, 2),
            union_us_per_call=round(union / calls, 1),
            span_us_per_call=round(span / calls, 1),
            idle_fraction=round(1 - union / span, 3) if span else None,
        )
    runtime: dict[str, int] = {}  # host calls inside the calls' ranges, on any thread
    for e in events:
        if e.device_type != DeviceType.CPU or not inside.holds(e.time_range.start):
            continue
        if e.name.startswith("cu") or e.name in SYNC_NAMES:
            runtime[e.name] = runtime.get(e.name, 0) + 1
    launches = sorted(
        ((n, c) for n, c in runtime.items() if n.startswith("cu")), key=lambda nc: -nc[1]
    )
    waits = set(SYNC_NAMES) - set(own_syncs) - {"aten::_local_scalar_dense"}  # .item() of a
    syncs = {n: round(c / calls, 2) for n, c in runtime.items() if n in SYNC_NAMES}  # CPU tensor
    out.update(  # waits too: a CUDA one shows as cudaStreamSynchronize and a DtoH copy
        runtime_calls_per_call={n: round(c / calls, 1) for n, c in launches[:10]},
        syncs_per_call=syncs,
        host_sync=any(syncs.get(n, 0) > 0 for n in waits) or out.get("dtoh_copies_per_call", 0) > 0,
        top_kernels=table,
        top_host_ops=host_table(prof, calls, names),
    )
    return out


def host_table(prof: profile, calls: int, ranges: set[str], top: int = 10) -> list[dict]:
    """The host's top operators and runtime calls by self CPU time (where a call's host time
    goes: Python-side dispatch, launches, plan lookups, waits)."""
    rows = sorted(
        (
            (float(avg.self_cpu_time_total), avg.key, int(avg.count))
            for avg in prof.key_averages()
            if avg.device_type == DeviceType.CPU and avg.key not in ranges
        ),
        reverse=True,
    )
    return [
        {"name": name[:NAME_CHARS], "calls": count, "self_us_per_call": round(us / calls, 1)}
        for us, name, count in rows[:top]
    ]


def range_stats(prof: profile, calls: int, labels: Iterable[str]) -> dict[str, Any]:
    """Host time and kernels launched beneath (same thread) per call of each named range."""
    stats = {}
    for avg in prof.key_averages():
        if avg.key in labels and avg.device_type == DeviceType.CPU:
            stats[avg.key] = {
                "occurrences_per_call": round(avg.count / calls, 2),
                "host_us_per_call": round(avg.cpu_time_total / calls, 1),
                "device_us_per_call": round(_device_time(avg, own=False) / calls, 1),
            }
    return stats


class ModuleRanges:
    """While open, every call of the named modules runs inside a record_function range of its
    name."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.modules, self.handles, self.open = modules, [], {}

    def __enter__(self) -> ModuleRanges:
        for label, module in self.modules.items():
            self.handles.append(module.register_forward_pre_hook(self._enter(label)))
            self.handles.append(module.register_forward_hook(self._leave(label)))
        return self

    def _enter(self, label: str) -> Callable[..., None]:
        def hook(*_args: Any) -> None:
            self.open[label] = record_function(label).__enter__()

        return hook

    def _leave(self, label: str) -> Callable[..., None]:
        def hook(*_args: Any) -> None:
            self.open.pop(label).__exit__(None, None, None)

        return hook

    def __exit__(self, *_exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def timed(run: Run, fn: Callable[[], Any], reset: Callable[[], None] | None = None) -> dict:
    """Median and IQR of fn's wall time per call (hyena_lite.timing)."""
    from hyena_lite.timing import time_call

    timing = time_call(fn, reset, **run.shapes.timing)
    return {"wall_ms": round(timing.median_ms, 4), "wall_iqr_ms": round(timing.iqr_ms, 4)}


def _print(title: str, entry: dict[str, Any], rows: int = 8) -> None:
    keys = ("wall_ms", "host_us_per_call", "busy_us_per_call", "kernels_per_call", "idle_fraction")
    print(title, " ".join(f"{k}={entry[k]}" for k in keys if k in entry), flush=True)
    print(f"  syncs/call {entry.get('syncs_per_call')}")
    print(f"  runtime calls/call {entry.get('runtime_calls_per_call')}")
    for row in entry.get("top_kernels", [])[:rows]:
        share = f"{row['pct']:6.2f}% {row['total_us']:>11.1f} us x{row['calls']:<6}"
        print(f"  {share} {row['name'][:80]}")


def _failed(error: Exception) -> dict[str, str]:
    print(f"  failed: {type(error).__name__}: {error}", flush=True)
    return {"error": f"{type(error).__name__}: {error}"[:500]}


# ---------------------------------------------------------------------------------- decode
def decode(run: Run) -> None:
    """The decoding steps at shapes.context, batch 1: the student's and teacher's graphs, the
    student's eager step."""
    from hyena_lite.decoding import fit_student
    from hyena_lite.experiments.bench import gpt2_teacher
    from hyena_lite.fastdecode import (
        STEP_HEADROOM,
        StudentGraphDecoder,
        TeacherGraphDecoder,
        cache_length,
    )
    from hyena_lite.models import convert

    s = run.shapes
    part: dict[str, Any] = {
        "context": s.context,
        "batch": 1,
        "model": f"GPT-2 shapes: {s.layers} layers, width {s.width}, {s.heads} heads, "
        f"vocabulary {s.vocab}, random weights; student: every attention -> Hyena order 2, "
        f"modal order {s.order}",
        "workloads": {},
    }
    run.results["decode"] = part
    if not run.allows("decode: models and modal fit", 40.0):
        return
    longest = s.context + STEP_HEADROOM + 1
    torch.manual_seed(0)
    teacher = gpt2_teacher(longest, s.layers, s.width, s.heads, s.vocab)
    teacher = teacher.to(device=run.device, dtype=run.dtype).eval()
    student = convert(teacher, init="fresh", l_max=longest).eval()
    start = time.perf_counter()
    fits = fit_student(student, s.order, length=s.fit_taps, progress=False).fits
    part["fit_s"] = round(time.perf_counter() - start, 1)
    generator = torch.Generator(run.device).manual_seed(s.context)
    ids = torch.randint(0, s.vocab, (1, s.context + 1), device=run.device, generator=generator)
    ids, token = ids[:, :-1], ids[:, -1:]

    def make(side: str, compile: bool, graph: bool, mlp: str) -> Any:
        if side == "student":
            kernel = "torch" if mlp == "torch" else "triton_fused"
            return StudentGraphDecoder(
                student, fits, 1, compile=compile, graph=graph, kernel=kernel, mlp_kernel=mlp
            )
        return TeacherGraphDecoder(
            teacher, 1, cache_length(s.context), compile=compile, graph=graph, mlp_kernel=mlp
        )

    # (name, side, compiled, graphed, mlp_kernel): the strongest steps first, as speed_h200 runs
    # them; on CUDA the fastest of all first: the steps written block by block (norms inside the
    # Triton kernels), then the student's mixers and both sides' MLPs as Triton kernels
    variants = [
        (f"{side}_{kind}", side, kind.startswith("compiled"), kind.endswith("graph") and run.cuda)
        for kind in (["compiled_graph"] if run.compile else []) + ["eager_graph"]
        for side in ("student", "teacher")
    ]
    variants = [(*variant, "torch") for variant in variants]
    if run.cuda and run.compile:
        variants[:0] = [
            (
                "student_compiled_graph_triton_fused_triton_blocks",
                "student",
                True,
                True,
                "triton_blocks",
            ),
            ("teacher_compiled_graph_triton_blocks", "teacher", True, True, "triton_blocks"),
            ("student_compiled_graph_triton_fused_triton_mlp", "student", True, True, "triton"),
            ("teacher_compiled_graph_triton_mlp", "teacher", True, True, "triton"),
        ]
    variants.append(("student_eager", "student", False, False, "torch"))  # launches one by one
    for name, side, compiled, graphed, mlp in variants:
        if not run.allows(f"decode {name}", 60.0 if compiled else 20.0):
            continue
        print(f"decode {name} ...", flush=True)
        entry: dict[str, Any] = {"graph": graphed, "compiled": compiled}
        steps = s.graph_steps if graphed else s.eager_steps
        try:
            decoder = make(side, compiled, graphed, mlp)
            start = time.perf_counter()
            with torch.no_grad():
                decoder.prefill(ids)
                decoder.step(token)  # records (and compiles) the graph
            run.sync()
            entry["setup_s"] = round(time.perf_counter() - start, 1)
            reads = decoder.read_bytes(*(() if side == "student" else (s.context,)))
            entry["read_mb"] = round(reads / 2**20, 1)

            def reset(decoder: Any = decoder) -> None:
                decoder.rewind(s.context + 1)

            entry.update(timed(run, decoder.replay, reset))
            reset()
            prof = profiled(run, decoder.replay, steps)
            entry.update(summarize(prof, run, steps, s.top, entry["wall_ms"]))
            _print(f"decode {name}:", entry)
        except Exception as error:  # noqa: BLE001  a failure is a result to report, not a crash
            entry.update(_failed(error))
        part["workloads"][name] = entry
        decoder = None
        run.free()
        run.save()


# ---------------------------------------------------------------------------------- operator
HYENA_PARTS = ("filter_fn", "in_proj", "short_filter", "out_proj")


def operator(run: Run) -> None:
    """The Hyena and attention blocks, forward and forward + backward, batch 1, per length."""
    from hyena_lite import fastpath, monarch_conv, toeplitz_conv
    from hyena_lite.cudagraph import record
    from hyena_lite.experiments.bench import CausalSelfAttention
    from hyena_lite.operator import HyenaOperator

    s = run.shapes
    rows: list[dict[str, Any]] = []
    run.results["operator"] = {"width": s.width, "heads": s.heads, "batch": 1, "rows": rows}
    torch.manual_seed(0)
    attn = CausalSelfAttention(s.width, s.heads).to(run.device, run.dtype).eval()
    hyena = HyenaOperator(s.width, s.hyena_l_max).to(run.device, run.dtype).eval()
    hyena.fastpath.cuda_graphs = False  # the forward is recorded whole, as speed_h200 does
    labels = {f"hyena.{name}": getattr(hyena, name) for name in HYENA_PARTS}
    for length in s.lengths:
        x = torch.randn(1, length, s.width, device=run.device, dtype=run.dtype)
        row: dict[str, Any] = {"L": length}
        rows.append(row)
        workloads = [
            ("hyena_forward", hyena, False),
            ("attn_forward", attn, False),
            ("hyena_fwdbwd", hyena, True),
            ("attn_fwdbwd", attn, True),
        ]
        if run.args.monarch and run.cuda and monarch_conv.supports(length):
            workloads.insert(1, ("hyena_monarch_forward", hyena, False))
        if run.args.toeplitz and run.cuda and toeplitz_conv.supports(length):
            workloads.insert(1, ("hyena_toeplitz_forward", hyena, False))
        for name, block, training in workloads:
            if not run.allows(f"operator {name} L={length}", 15.0):
                continue
            hyena.fastpath.monarch = name == "hyena_monarch_forward"
            hyena.fastpath.toeplitz = name == "hyena_toeplitz_forward"
            print(f"operator {name} L={length} ...", flush=True)
            entry: dict[str, Any] = {}
            try:
                fn = _fwdbwd(block, x) if training else _forward(block, x)
                for _ in range(3):  # warm-up: the fast path fuses its kernels on a shape's 2nd call
                    fn()
                entry.update(timed(run, fn))
                if run.cuda and not training:
                    replay = record(fn, run.device, warmup=3)[0].replay
                    entry["graph_wall_ms"] = timed(run, replay)["wall_ms"]
                ranges = labels if block is hyena else {}
                with ModuleRanges(ranges):
                    prof = profiled(run, fn, s.operator_calls)
                entry.update(
                    summarize(prof, run, s.operator_calls, s.top, entry["wall_ms"], ranges)
                )
                if ranges:
                    entry["ranges"] = range_stats(prof, s.operator_calls, ranges)
                _print(f"operator {name} L={length}:", entry)
            except Exception as error:  # noqa: BLE001
                entry.update(_failed(error))
            block.zero_grad(set_to_none=True)
            block.eval()
            row[name] = entry
            fastpath.clear_caches(hyena)
            run.free()
            run.save()


def _forward(block: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """The block's inference forward."""

    def forward() -> None:
        with torch.no_grad():
            block(x)

    return forward


def _fwdbwd(block: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """A training step's work on the block: forward and backward with the input's gradient (as
    scripts/speed_h200.py times it)."""
    xg, grad = x.detach().requires_grad_(True), torch.randn_like(x)
    block.train()

    def step() -> None:
        block(xg).backward(grad)

    return step


# ---------------------------------------------------------------------------------- kd
class Phases:
    """Named record_function ranges entered one after another; with `sync`, each range waits for
    the GPU before it ends, so that its kernels run inside it, and its wall time is kept."""

    def __init__(self, sync: Callable[[], None] | None) -> None:
        self.sync, self.current, self.started = sync, None, 0.0
        self.walls: dict[str, list[float]] = {}

    def enter(self, name: str) -> None:
        self.leave()
        self.current = (name, record_function(name).__enter__())
        self.started = time.perf_counter()

    def leave(self) -> None:
        if self.current is None:
            return
        if self.sync is not None:
            self.sync()
        name, handle = self.current
        self.walls.setdefault(name, []).append(time.perf_counter() - self.started)
        handle.__exit__(None, None, None)
        self.current = None


class KDStep:
    """One optimiser step of the KD stage as `hyena_lite.training` runs it (one micro-batch),
    marked in phases."""

    def __init__(self, run: Run) -> None:
        from transformers import LlamaConfig, LlamaForCausalLM

        from hyena_lite import distill
        from hyena_lite.models import convert
        from hyena_lite.training import TrainConfig, _make_accelerator, _optimizer, lr_factor

        s = run.shapes
        stage = {name: options for name, _, options in distill.RECIPES["transfer"]["stages"]}["kd"]
        torch.manual_seed(0)
        teacher = LlamaForCausalLM(LlamaConfig(**s.kd_model))
        self.teacher = distill.freeze(teacher.float().to(run.device))  # as smollm2_h200 does
        torch.manual_seed(0)
        self.student = convert(self.teacher, init="teacher")  # distill.make_student's all-Hyena
        self.config = TrainConfig(
            steps=1000,
            lr=s.kd_lr * stage.get("lr_scale", 1.0),
            batch_size=s.kd_batch,
            seq_len=s.kd_seq,
            weight_decay=0.0,
            progress=False,
            device=run.device.type,
        )
        self.accelerator = _make_accelerator(self.config)
        self.student.train()
        self.params = [p for p in self.student.parameters() if p.requires_grad]
        optimizer = _optimizer(self.params, self.config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, self.config)
        )
        self.wrapped, self.optimizer = self.accelerator.prepare(self.student, optimizer)
        self.base = self.accelerator.unwrap_model(self.wrapped)
        self.loss_fn = distill.kd_objective(self.teacher, kd=1.0, ce=stage.get("ce_weight", 0.0))
        generator = torch.Generator().manual_seed(0)
        self.batch = torch.randint(
            0, s.kd_model["vocab_size"], (s.kd_batch, s.kd_seq), generator=generator
        ).to(self.accelerator.device)
        self.phases = Phases(None)
        self.ce_weight = stage.get("ce_weight", 0.0)
        self.mixed_precision = self.accelerator.mixed_precision

    def hooks(self) -> list[Any]:
        """Phase boundaries at the teacher's and the student's forward."""
        return [  # self.phases looked up at each call: a run may swap it
            self.teacher.register_forward_pre_hook(
                lambda *_: self.phases.enter("kd.teacher_forward")
            ),
            self.teacher.register_forward_hook(lambda *_: self.phases.leave()),
            self.student.register_forward_pre_hook(
                lambda *_: self.phases.enter("kd.student_forward")
            ),
            self.student.register_forward_hook(lambda *_: self.phases.enter("kd.loss")),
        ]

    def __call__(self) -> None:
        from hyena_lite.batches import mean_over_processes
        from hyena_lite.runs import nonfinite_gradients

        accelerator, phases = self.accelerator, self.phases
        with accelerator.autocast():  # as _Loop._accumulate: forward, loss and backward under it
            loss, metrics = self.loss_fn(self.wrapped, self.batch)
            phases.enter("kd.backward")
            accelerator.backward(loss)
        phases.enter("kd.checks")  # as _Loop.run: the loss reduced, gradients checked
        mean_over_processes(accelerator, loss.detach().float(), metrics, False)
        nonfinite_gradients(self.base)
        phases.enter("kd.optimizer")
        accelerator.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        phases.leave()


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def kd(run: Run) -> None:
    """One KD step of a SmolLM2-135M-shaped pair: tokens/s, the phases' wall and GPU time, and the
    top kernels."""
    s = run.shapes
    tokens = s.kd_batch * s.kd_seq
    part: dict[str, Any] = {"batch": s.kd_batch, "seq_len": s.kd_seq, "tokens_per_step": tokens}
    run.results["kd"] = part
    if not run.allows("kd", 60.0):
        return
    print("kd ...", flush=True)
    try:
        start = time.perf_counter()
        step = KDStep(run)
        part.update(
            model="SmolLM2-135M shapes (LlamaConfig), random weights, float32 weights, "
            f"autocast {step.mixed_precision}; student: convert(init='teacher'), all layers Hyena",
            kd_loss=f"kd_objective(kd=1.0, ce={step.ce_weight}): the transfer recipe's KD stage",
            lr=step.config.lr,
            teacher_parameters=_parameters(step.teacher),
            student_parameters=_parameters(step.student),
        )
        handles = step.hooks()
        try:
            for _ in range(2):  # warm-up
                step()
            run.sync()
            part["setup_s"] = round(time.perf_counter() - start, 1)
            walls = []
            for _ in range(s.kd_steps):  # the step as training runs it: no extra syncs
                begin = time.perf_counter()
                step()
                run.sync()
                walls.append(time.perf_counter() - begin)
            step_ms = statistics.median(walls) * 1e3
            part.update(step_ms=round(step_ms, 2), tokens_per_s=round(tokens / step_ms * 1e3))
            step.phases = Phases(run.sync)  # each phase waits for its kernels
            walls = []
            for _ in range(s.kd_steps):
                begin = time.perf_counter()
                step()
                walls.append(time.perf_counter() - begin)
            phase_wall = {n: statistics.median(v) * 1e3 for n, v in step.phases.walls.items()}
            part["synced_step_ms"] = round(statistics.median(walls) * 1e3, 2)
            prof = profiled(run, step, s.kd_profiled)
        finally:
            for handle in handles:
                handle.remove()
        entry = summarize(  # GPU busy against the step as training runs it (unsynchronised)
            prof,
            run,
            s.kd_profiled,
            s.kd_top,
            part["step_ms"],
            KD_PHASES,
            own_syncs=("cudaDeviceSynchronize",),
        )
        part.update(entry)
        part["phases"] = _phase_split(prof, run, s.kd_profiled, phase_wall)
        _print("kd:", {**part, "wall_ms": part["step_ms"]}, rows=10)
        for name, phase in part["phases"].items():
            print(f"  {name:20s} wall {phase['wall_ms']:9.2f} ms  gpu {phase['gpu_ms']:9.2f} ms")
    except Exception as error:  # noqa: BLE001
        part.update(_failed(error))
    step = None
    run.free()
    run.save()


def _phase_split(
    prof: profile, run: Run, calls: int, wall_ms: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Per KD phase: its wall time (median, synchronised, unprofiled) and, from the profile, its
    kernels' time, count and top 5 (CUDA) or its aten ops' self time (CPU), per step."""
    events = list(prof.events())
    device = _device_events(events, {CALL, *KD_PHASES})
    out = {}
    for name in KD_PHASES:
        windows = Windows(events, name)
        if run.cuda:
            mine = [e for e in device if windows.holds(e.time_range.start)]
        else:
            mine = [
                e
                for e in events
                if e.name.startswith("aten::") and windows.holds(e.time_range.start)
            ]
        totals: dict[str, float] = {}
        for e in mine:
            us = e.time_range.elapsed_us() if run.cuda else float(e.self_cpu_time_total)
            totals[e.name] = totals.get(e.name, 0.0) + us
        gpu_us = sum(totals.values())
        top = sorted(totals.items(), key=lambda kv: -kv[1])[:5]
        out[name] = {
            "wall_ms": round(wall_ms.get(name, 0.0), 3),
            "host_ms_profiled": round(windows.mean_us() / 1e3, 3),
            "gpu_ms": round(gpu_us / calls / 1e3, 3),
            "kernels_per_step": round(len(mine) / calls, 1),
            "top_kernels": [
                {"name": n[:NAME_CHARS], "us_per_step": round(us / calls, 1)} for n, us in top
            ],
        }
    return out


# ---------------------------------------------------------------------------------- main
RUNNERS: dict[str, Callable[[Run], None]] = {"decode": decode, "operator": operator, "kd": kd}


def _parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(
            f"unknown part(s) {unknown or text!r}: give a comma-separated subset of "
            f"{','.join(PARTS)}"
        )
    return parts


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument(
        "--parts", type=_parts, default=list(PARTS), help=f"comma-separated, of {','.join(PARTS)}"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, in seconds")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=300.0,
        help="start no work that could end after this many seconds",
    )
    parser.add_argument(
        "--lengths",
        type=lambda text: tuple(int(x) for x in text.split(",")),
        default=None,
        help="the operator part's sequence lengths (default: 1K, 4K, 16K)",
    )
    parser.add_argument(
        "--monarch",
        action="store_true",
        help="the operator part also profiles the Hyena forward with FastPath.monarch (the "
        "matrix-product convolutions) where monarch_conv supports the length",
    )
    parser.add_argument(
        "--toeplitz",
        action="store_true",
        help="the operator part also profiles the Hyena forward with FastPath.toeplitz (the "
        "direct block-Toeplitz convolutions) where toeplitz_conv supports the length",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile the decoding steps before recording them, as speed_h200 (default: on CUDA)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(sys.argv[1:] if argv is None else argv)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this profile is for one; run --smoke to check it on a CPU")
    shapes = SMOKE if args.smoke else Shapes()
    if args.lengths:
        shapes = replace(shapes, lengths=args.lengths)
    run = Run(args, shapes)
    run.results["shapes"] = asdict(shapes)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    run.save()
    for part in args.parts:
        RUNNERS[part](run)
        run.save()
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KB) in {run.elapsed():.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
