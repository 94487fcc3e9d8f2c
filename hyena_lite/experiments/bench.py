"""Profiling: time and peak memory of attention against Hyena, for one block, a whole model and
generation.

Every time is the median over repeats after warm-up (CUDA events on GPU); every result is a plain
dict of rows that `save_results` writes as JSON with the hardware, versions, git commit and command
behind it. `plot_scaling` draws rows on log-log axes and marks where the two curves cross.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from hyena_lite import fastpath, runs
from hyena_lite.cudagraph import record
from hyena_lite.fastpath import FastPath
from hyena_lite.fftconv import fft_size
from hyena_lite.generation import Decoder, synchronize
from hyena_lite.models import convert
from hyena_lite.operator import HyenaOperator
from hyena_lite.provenance import command_line, provenance

WHATS = ("operator", "levers", "model", "generate")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ------------------------------------------------------------------------------------------- timing


@dataclass
class Measurement:
    """Median and all times (ms) of repeated calls, and the peak memory they reached (MiB; None on
    CPU)."""

    median_ms: float
    times_ms: list[float]
    peak_mb: float | None


def measure(
    fn: Callable[[], Any],
    device: str | torch.device = "cpu",
    warmup: int = 2,
    repeats: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Call fn `warmup` times, then time `repeats` calls (CUDA events on GPU, `clock` in seconds on
    CPU).

    The peak is torch's largest allocation total during the timed calls (weights and inputs
    included), measured on CUDA only: PyTorch keeps no such counter for the CPU.
    Taught in chapter 9.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(
            f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}"
        )
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        for _ in range(repeats):
            start_s = clock()
            fn()
            times.append((clock() - start_s) * 1e3)
        peak = None
    return Measurement(statistics.median(times), times, peak)


def median_ms(
    fn: Callable[[], Any], device: str | torch.device = "cpu", warmup: int = 2, repeats: int = 5
) -> float:
    """The median time of fn in milliseconds (see `measure`). Taught in chapter 2."""
    return measure(fn, device, warmup, repeats).median_ms


def graph_replay(fn: Callable[[], Any], device: str | torch.device) -> Callable[[], None]:
    """fn recorded once as a CUDA graph (after two warm-up calls on a side stream); returns its
    replay."""
    graph, _ = record(fn, device, warmup=2)
    return graph.replay


def _guarded(fn: Callable[[], Measurement], device: torch.device) -> Measurement | None:
    """Run a measurement; on CUDA out-of-memory return None (recorded as a missing point) instead of
    failing."""
    try:
        return fn()
    except torch.OutOfMemoryError:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return None


# ------------------------------------------------------------------------------------------- blocks


class CausalSelfAttention(nn.Module):
    """GPT-2's attention block: q/k/v projections, causal scaled dot-product attention over heads,
    out projection.

    F.scaled_dot_product_attention picks FlashAttention on a GPU that has it, and a fused CPU kernel
    otherwise.
    Taught in chapter 9.
    """

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be a multiple of n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        q, k, v = (
            self.qkv(x)
            .view(batch, length, 3, self.n_heads, width // self.n_heads)
            .permute(2, 0, 3, 1, 4)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


def hyena_forward_bytes(
    d_model: int,
    length: int,
    batch: int = 1,
    order: int = 2,
    act_bytes: int = 2,
    fft_bytes: int = 4,
) -> int:
    """Bytes the Hyena block's forward moves through memory if each of its passes reads and writes
    once.

    The passes: in-projection, short filter (writing gates and the zero-padded float32 value), then
    per order an rfft, a product with the cached filter spectrum, an irfft and the gate, and the
    out-projection. Weights are left out (under 2% at L >= 1K). Dividing by the memory bandwidth
    gives the time a perfect implementation of these passes would take. `fft_bytes`: the bytes of
    one real number of the FFT chain (4 for float32; 2 for `FastPath.half_fft`'s float16).
    Taught in chapter 9.
    """
    n = fft_size(length)
    act, signal = (
        batch * length * d_model * act_bytes,
        batch * d_model * n * fft_bytes,
    )  # a [B, D, L] activation; a padded signal (float32 by default)
    total = act + (order + 1) * act  # in-projection: read u, write z
    total += (
        (order + 1) * act + order * act + signal
    )  # short filter: read z, write gates and padded v
    for step in range(order):
        total += (
            2 * signal
        )  # rfft (a half spectrum of complex64 is the same size as the padded real signal)
        total += (
            2 * signal + d_model * n * fft_bytes
        )  # spectrum product, in place, reading the filter spectrum
        total += 2 * signal  # irfft
        last = step == order - 1
        total += (
            signal // 2 + signal // 2 + act + (act if last else signal)
        )  # gate: read y, v, x; write next input
    total += act + act  # out-projection: read y, write out
    return total


def copy_bandwidth_gbs(device: str | torch.device, mib: int = 1024, repeats: int = 10) -> float:
    """Measured memory bandwidth of a large device-to-device copy, counting bytes read plus written,
    GB/s."""
    device = torch.device(device)
    src = torch.randn(mib * 2**18, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, warmup=3, repeats=repeats)
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


# ----------------------------------------------------------------------------------------- operator


def benchmark_operator(
    lengths: list[int],
    d_model: int = 768,
    n_heads: int = 12,
    batch: int = 1,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    backward: bool = True,
    warmup: int = 2,
    repeats: int = 5,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Attention block against Hyena block of the same width, forward (and forward + backward), per
    length.

    Forward runs under torch.no_grad (inference: the Hyena block uses its cached filter spectra);
    forward + backward is a training step's work, input gradient included. Each row holds L, then
    per block (`attn`, `hyena` on its fast path, `hyena_plain` on the plain one) `{block}_ms` and
    `{block}_peak_mb`, with `{block}_fwdbwd_ms` and `{block}_fwdbwd_peak_mb` when `backward`; on
    CUDA the forward of `hyena` is timed with `fastpath.cuda_graphs` on (replayed as a CUDA graph),
    `hyena_nograph_ms` with it off, and `attn_graph_ms` is the attention block replayed as a CUDA
    graph too; `hyena_fast_rel_err` is the fast output's error against the plain one (eager,
    recorded and replayed calls) and `hyena_bytes` the traffic of the fast forward (see
    `hyena_forward_bytes`).
    Taught in chapter 9.
    """
    torch.manual_seed(seed)
    dev = torch.device(device)
    l_max = max(lengths)
    blocks: dict[str, nn.Module] = {
        "attn": CausalSelfAttention(d_model, n_heads),
        "hyena": HyenaOperator(d_model, l_max),
    }
    blocks["hyena_plain"] = copy.deepcopy(blocks["hyena"])
    blocks["hyena_plain"].fast = False
    blocks["hyena"].fastpath.cuda_graphs = True
    for block in blocks.values():
        block.to(device=dev, dtype=dtype)
    return [
        _operator_row(blocks, length, batch, dev, dtype, backward, warmup, repeats)
        for length in tqdm(lengths, desc="operator", leave=False)
    ]


def _operator_row(
    blocks: dict[str, nn.Module],
    length: int,
    batch: int,
    dev: torch.device,
    dtype: torch.dtype,
    backward: bool,
    warmup: int,
    repeats: int,
) -> dict[str, Any]:
    """One row of `benchmark_operator`."""
    d_model = blocks["hyena"].d_model
    x = torch.randn(batch, length, d_model, device=dev, dtype=dtype)
    row: dict[str, Any] = {"L": length, "batch": batch}
    for name, block in blocks.items():
        block.eval()

        def forward(block: nn.Module = block) -> None:
            with torch.no_grad():
                block(x)

        m = _guarded(lambda: measure(forward, dev, warmup, repeats), dev)
        row[f"{name}_ms"], row[f"{name}_peak_mb"] = (m.median_ms, m.peak_mb) if m else (None, None)
        if name == "hyena" and dev.type == "cuda":
            block.fastpath.cuda_graphs = False
            block.fastpath.clear()
            m = _guarded(lambda: measure(forward, dev, warmup, repeats), dev)
            row["hyena_nograph_ms"] = m.median_ms if m else None
            block.fastpath.cuda_graphs = True
        if (
            name == "attn" and dev.type == "cuda"
        ):  # attention's best case too: no CPU launch cost either
            try:
                m = _guarded(lambda: measure(graph_replay(forward, dev), dev, warmup, repeats), dev)
            except RuntimeError as error:
                print(f"attention could not be recorded as a CUDA graph at L={length}: {error}")
                m = None
            row["attn_graph_ms"] = m.median_ms if m else None
        if backward:
            block.train()
            xg = x.detach().requires_grad_(True)
            grad = torch.randn_like(x)

            def step(block: nn.Module = block, xg: Tensor = xg, grad: Tensor = grad) -> None:
                block(xg).backward(grad)

            m = _guarded(lambda: measure(step, dev, warmup, repeats), dev)
            row[f"{name}_fwdbwd_ms"], row[f"{name}_fwdbwd_peak_mb"] = (
                (m.median_ms, m.peak_mb) if m else (None, None)
            )
            block.zero_grad(set_to_none=True)
        fastpath.clear_caches(block)  # this block's memory: keep it out of the next one's peak
    with (
        torch.no_grad()
    ):  # three fast calls: eager, recorded as a CUDA graph and replayed, replayed
        plain = blocks["hyena_plain"].eval()(x).float()
        fast = [blocks["hyena"].eval()(x).float() for _ in range(3)]
        row["hyena_fast_rel_err"] = max(((f - plain).norm() / plain.norm()).item() for f in fast)
    fastpath.clear_caches(blocks["hyena"])
    row["hyena_bytes"] = hyena_forward_bytes(
        d_model, length, batch, blocks["hyena"].order, x.element_size()
    )
    return row


def benchmark_levers(
    lengths: list[int],
    d_model: int = 768,
    batch: int = 1,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    warmup: int = 2,
    repeats: int = 5,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The Hyena block's forward time (ms, under no_grad) as each speed lever is added, per length.

    `plain_ms`: the plain forward; `fast_nocache_ms`: the fast path, unfused, filters recomputed
    every call; `fast_unfused_ms`: plus the cached filter spectra; on CUDA only (None on CPU, where
    the fast path runs unfused and without graphs): `fast_fused_ms`: plus the element-wise work
    fused by torch.compile; `fast_ms`: plus the replay of the whole forward as a CUDA graph.
    """
    torch.manual_seed(seed)
    dev = torch.device(device)
    op = HyenaOperator(d_model, max(lengths)).to(device=dev, dtype=dtype).eval()
    op.fast = False  # op(x) is the plain forward; the fast variants call fastpath.fast_forward
    variants = {
        "plain": (False, False, True, False),
        "fast_nocache": (True, False, False, False),
        "fast_unfused": (True, False, True, False),
    }
    if dev.type == "cuda":
        variants.update(fast_fused=(True, True, True, False), fast=(True, True, True, True))
    rows = []
    for length in tqdm(lengths, desc="levers", leave=False):
        x = torch.randn(batch, length, d_model, device=dev, dtype=dtype)
        row: dict[str, Any] = {"L": length, "batch": batch}
        for name, (fast, fused, cache, graphs) in variants.items():
            op.fastpath = FastPath(compile=fused, cuda_graphs=graphs, cache_spectra=cache)

            def forward(fast: bool = fast, x: Tensor = x) -> None:
                with torch.no_grad():
                    fastpath.fast_forward(op, x) if fast else op(x)

            m = _guarded(lambda: measure(forward, dev, warmup, repeats), dev)
            row[f"{name}_ms"] = m.median_ms if m else None
        row.setdefault("fast_fused_ms", None)
        row.setdefault("fast_ms", None)
        op.fastpath.clear()
        rows.append(row)
    return rows


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the process's standard error (file descriptor 2) for a while: some builds of the
    profiler print a line there at every start and stop, which would otherwise land in the book's
    pages."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def kernel_breakdown(
    fn: Callable[[], Any], device: str | torch.device, top: int = 12
) -> list[dict[str, Any]]:
    """The kernels (CUDA) or operators (CPU) that one call of fn spends its time in, largest first.

    Each entry: name, ms (total over the call) and calls; fn is called twice first so compilation
    stays out.
    Taught in chapter 9.
    """
    from torch.profiler import ProfilerActivity, profile

    dev = torch.device(device)
    for _ in range(2):
        fn()
    synchronize(dev)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with _quiet_stderr(), profile(activities=activities) as prof:
        fn()
        synchronize(dev)
    entries = []
    for event in prof.key_averages():
        if dev.type == "cuda":
            if event.device_type != torch.autograd.DeviceType.CUDA:
                continue
            us = getattr(event, "self_device_time_total", None) or getattr(
                event, "self_cuda_time_total", 0
            )
        else:
            us = event.self_cpu_time_total
        if us > 0:
            entries.append({"name": event.key[:120], "ms": us / 1e3, "calls": event.count})
    return sorted(entries, key=lambda e: -e["ms"])[:top]


# -------------------------------------------------------------------------------------------- plots


def crossover(rows: list[dict[str, Any]], x: str, a: str, b: str) -> float | None:
    """The x where series b first becomes no slower than series a, interpolated on log-log axes;
    None if never. Taught in chapter 9."""
    points = [(r[x], r[a], r[b]) for r in rows if r.get(a) and r.get(b)]
    points.sort()
    for i, (xi, ai, bi) in enumerate(points):
        if bi <= ai:
            if i == 0:
                return float(xi)
            x0, a0, b0 = points[i - 1]
            d0, d1 = math.log(b0 / a0), math.log(bi / ai)  # log ratio, positive while b is slower
            t = d0 / (d0 - d1)
            return float(math.exp(math.log(x0) + t * (math.log(xi) - math.log(x0))))
    return None


def plot_scaling(
    rows: list[dict[str, Any]],
    x: str,
    series: dict[str, str],
    ax: Any = None,
    ylabel: str = "time (ms)",
    title: str | None = None,
    cross: tuple[str, str] | None = None,
) -> Any:
    """Plot columns of `rows` (label -> key) against `x` on log-log axes; mark where the columns
    `cross` (default: the first two series) cross, the second becoming no slower than the first.
    Taught in chapter 9."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    styles = [
        ("o", "-"),
        ("s", "--"),
        ("^", ":"),
        ("D", "-."),
        ("v", "-"),
        ("P", "--"),
    ]  # readable without colour
    for (label, key), (marker, line) in zip(series.items(), styles * len(series), strict=False):
        points = sorted((r[x], r[key]) for r in rows if r.get(key) is not None)
        if points:
            ax.plot(*zip(*points, strict=False), marker=marker, linestyle=line, label=label)
    keys = list(cross or series.values())
    if len(keys) >= 2 and (where := crossover(rows, x, keys[0], keys[1])) is not None:
        ax.axvline(where, color="grey", linestyle="--", linewidth=1)
        ax.annotate(
            f"crossover ~{where:,.0f}",
            (where, 0.95),
            xycoords=("data", "axes fraction"),
            ha="right",
            va="top",
            rotation=90,
            fontsize=8,
            color="grey",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


# ------------------------------------------------------------------------------------------- models


def gpt2_teacher(
    n_positions: int,
    n_layer: int = 12,
    n_embd: int = 768,
    n_head: int = 12,
    vocab_size: int = 50257,
) -> nn.Module:
    """A GPT2LMHeadModel of the given shape (GPT-2-124M by default) with random weights: speed does
    not depend on them."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_positions=n_positions,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        vocab_size=vocab_size,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config).eval()


def hyena_student(teacher: nn.Module, l_max: int) -> nn.Module:
    """The teacher's Hyena student built by `hyena_lite.convert` (every attention replaced by
    Hyena)."""
    return convert(teacher, l_max=l_max).eval()


def _forward_kwargs(model: nn.Module, **kwargs: Any) -> dict[str, Any]:
    """Keep only the keyword arguments that this model's forward accepts (they differ across
    transformers 5.x)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in accepted}


def benchmark_model(
    models: dict[str, nn.Module],
    lengths: list[int],
    batch: int = 1,
    device: str = "cpu",
    warmup: int = 2,
    repeats: int = 5,
    vocab_size: int | None = None,
) -> list[dict[str, Any]]:
    """Forward time, tokens/s and peak memory of each model (name -> model, on `device`) on random
    tokens, per length.

    A forward computes the logits at every position, as a perplexity evaluation does; no cache is
    kept.
    """
    dev = torch.device(device)
    vocab = vocab_size or next(iter(models.values())).config.vocab_size
    rows = []
    for length in tqdm(lengths, desc="model", leave=False):
        ids = torch.randint(0, vocab, (batch, length), device=dev)
        row: dict[str, Any] = {"L": length, "batch": batch}
        for name, model in models.items():
            fastpath.clear_caches(
                model
            )  # filter spectra cached at another length are not this length's memory
            kwargs = _forward_kwargs(model, use_cache=False)

            def forward(model: nn.Module = model, kwargs: dict = kwargs, ids: Tensor = ids) -> None:
                with torch.no_grad():
                    model(ids, **kwargs)

            m = _guarded(lambda: measure(forward, dev, warmup, repeats), dev)
            row[f"{name}_ms"] = m.median_ms if m else None
            row[f"{name}_tokens_per_s"] = batch * length / (m.median_ms * 1e-3) if m else None
            row[f"{name}_peak_mb"] = m.peak_mb if m else None
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------- generation


# name -> factory(model) of an object with prefill(ids) -> logits and step(token) -> logits.
# Faster ways to decode a student register here with one line.
DECODERS: dict[str, Callable[[nn.Module], Decoder]] = {
    "kv_cache": partial(Decoder, mode="cached"),  # a transformer's key-value cache
    "recompute": partial(Decoder, mode="full"),  # the whole context again for every new token
}


def benchmark_generate(
    runs: dict[str, tuple[nn.Module, str]],
    contexts: list[int],
    new_tokens: int = 16,
    warmup: int = 2,
    device: str = "cpu",
    vocab_size: int | None = None,
) -> list[dict[str, Any]]:
    """Time per new token (median over `new_tokens` greedy steps after `warmup` steps) and memory,
    per context length.

    `runs` maps a label to (model, decoder name in DECODERS). Per label a row holds
    `{label}_ms_per_token`, `{label}_peak_mb` (prefill included) and `{label}_state_mb` (memory the
    prefill left behind: the KV cache for a transformer); the memory columns are None on CPU.
    """
    dev = torch.device(device)
    vocab = vocab_size or next(iter(runs.values()))[0].config.vocab_size
    rows = []
    for context in tqdm(contexts, desc="generate", leave=False):
        prompt = torch.randint(0, vocab, (1, context), device=dev)
        row: dict[str, Any] = {"context": context, "new_tokens": new_tokens}
        for label, (model, mode) in runs.items():
            if mode not in DECODERS:
                raise ValueError(f"unknown decoder {mode!r}; choose one of {', '.join(DECODERS)}")
            fastpath.clear_caches(model)
            result = _guarded(
                lambda mode=mode, model=model, prompt=prompt: _decode_timed(
                    DECODERS[mode](model), prompt, new_tokens, warmup, dev
                ),
                dev,
            )
            ms, peak, state = result if result else (None, None, None)
            row.update(
                {f"{label}_ms_per_token": ms, f"{label}_peak_mb": peak, f"{label}_state_mb": state}
            )
        rows.append(row)
    return rows


def _decode_timed(
    decoder: Decoder, prompt: Tensor, new_tokens: int, warmup: int, dev: torch.device
) -> tuple[float, float | None, float | None]:
    """Prefill, then greedy-decode warmup + new_tokens tokens; median ms of the timed steps, peak
    and state MiB."""
    cuda = dev.type == "cuda"
    with torch.no_grad(), decoder:
        if cuda:
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
        logits = decoder.prefill(prompt)
        state = (torch.cuda.memory_allocated(dev) - before) / 2**20 if cuda else None
        times = []
        for i in range(warmup + new_tokens):
            token = logits.argmax(-1, keepdim=True)
            if cuda:
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                start.record()
                logits = decoder.step(token)
                end.record()
                end.synchronize()
                elapsed = start.elapsed_time(end)
            else:
                start_s = time.perf_counter()
                logits = decoder.step(token)
                elapsed = (time.perf_counter() - start_s) * 1e3
            if i >= warmup:
                times.append(elapsed)
        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None
    return statistics.median(times), peak, state


# ------------------------------------------------------------------------------------------ results


def environment(device: str, command: str) -> dict[str, Any]:
    """The provenance of a benchmark run on `device`, and the device's details (threads, GPU memory,
    copy bandwidth)."""
    dev = torch.device(device)
    details: dict[str, Any] = {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        details.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            capability=f"{props.major}.{props.minor}",
            copy_bandwidth_gbs=round(copy_bandwidth_gbs(dev), 1),
            cudnn=torch.backends.cudnn.version(),
        )
    return {**provenance(command), "device": details}


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file written by `save_results`; say how to make one if it is missing.
    Taught in chapter 9."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no benchmark results at {path}; make them with `python -m hyena_lite benchmark "
            f"--json {path}`"
        )
    return json.loads(path.read_text())


def merge_results(*parts: dict[str, Any]) -> dict[str, Any]:
    """One results dict from several runs on the same hardware (sections of later parts win); each
    section keeps its command."""
    merged = dict(parts[0])
    for part in parts[1:]:
        if (
            part["device"].get("gpu") != merged["device"].get("gpu")
            or part["versions"] != merged["versions"]
        ):
            raise ValueError(
                "these results come from different hardware or versions; keep them in separate "
                "files"
            )
        merged.update({key: value for key, value in part.items() if key in WHATS})
    return merged


def save_results(path: str | Path, results: dict[str, Any]) -> Path:
    """Write results as indented JSON (creating folders); return the path."""
    return runs.write_json(path, results)  # atomic (hyena_lite.runs)


@dataclass
class BenchmarkConfig:
    """What `run_benchmark` measures (`whats`, see WHATS) and at which sizes: the options of
    `python -m hyena_lite benchmark`. `levers` also lists the kernels of one forward of each block
    at length `kernels_at` (default: the largest)."""

    whats: list[str] = field(default_factory=lambda: ["operator"])
    lengths: list[int] = field(default_factory=lambda: [256, 512, 1024])
    device: str = "cpu"
    dtype: str = "float32"
    batch: int = 1
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    vocab_size: int = 50257
    backward: bool = True
    new_tokens: int = 16
    student_modes: tuple[str, ...] = ("recompute",)
    warmup: int = 2
    repeats: int = 5
    kernels_at: int | None = None

    def __post_init__(self) -> None:
        unknown = [w for w in self.whats if w not in WHATS]
        if unknown:
            raise ValueError(f"unknown benchmark {unknown}; choose from {', '.join(WHATS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(
                "--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu"
            )
        self.lengths = sorted(self.lengths)


def run_benchmark(config: BenchmarkConfig, command: str | None = None) -> dict[str, Any]:
    """Run the benchmarks of `config` and return their results with their provenance."""

    c, torch_dtype = config, DTYPES[config.dtype]
    command = (
        command
        or f"hyena_lite.experiments.bench.run_benchmark({c.whats!r}, {c.lengths!r}, "
        f"device={c.device!r}, "
        f"dtype={c.dtype!r}, ...)"
    )
    results = environment(c.device, command)
    settings = {
        "device": c.device,
        "dtype": c.dtype,
        "batch": c.batch,
        "d_model": c.d_model,
        "n_heads": c.n_heads,
        "warmup": c.warmup,
        "repeats": c.repeats,
    }
    if "operator" in c.whats:
        rows = benchmark_operator(
            c.lengths,
            c.d_model,
            c.n_heads,
            c.batch,
            c.device,
            torch_dtype,
            c.backward,
            c.warmup,
            c.repeats,
        )
        if bandwidth := results["device"].get("copy_bandwidth_gbs"):
            for row in rows:
                row["hyena_bound_ms"] = row["hyena_bytes"] / (bandwidth * 1e9) * 1e3
        results["operator"] = {"command": command, "settings": settings, "rows": rows}
    if "levers" in c.whats:
        rows = benchmark_levers(
            c.lengths, c.d_model, c.batch, c.device, torch_dtype, c.warmup, c.repeats
        )
        at = c.kernels_at or max(c.lengths)
        x = torch.randn(c.batch, at, c.d_model, device=c.device, dtype=torch_dtype)
        blocks = {
            "attn": CausalSelfAttention(c.d_model, c.n_heads),
            "hyena": HyenaOperator(c.d_model, at),
        }
        kernels = {}
        blocks["hyena"].fastpath.cuda_graphs = False  # a replayed graph hides its kernels
        for name, block in blocks.items():
            block.to(device=c.device, dtype=torch_dtype).eval()
            with torch.no_grad():
                kernels[name] = kernel_breakdown(lambda block=block: block(x), c.device)
            xg, grad = x.detach().requires_grad_(True), torch.randn_like(x)
            kernels[f"{name}_fwdbwd"] = kernel_breakdown(
                lambda block=block, xg=xg, grad=grad: block.train()(xg).backward(grad), c.device
            )
        results["levers"] = {
            "command": command,
            "settings": settings,
            "rows": rows,
            "kernels": {"L": at, **kernels},
        }
    if "model" in c.whats or "generate" in c.whats:
        extra = c.new_tokens + c.warmup + 1
        teacher = gpt2_teacher(
            max(c.lengths) + extra, c.n_layers, c.d_model, c.n_heads, c.vocab_size
        )
        student = hyena_student(teacher, max(c.lengths) + extra)
        teacher.to(device=c.device, dtype=torch_dtype)
        student.to(device=c.device, dtype=torch_dtype)
        model_settings = {**settings, "n_layers": c.n_layers, "vocab_size": c.vocab_size}
        if "model" in c.whats:
            rows = benchmark_model(
                {"teacher": teacher, "student": student},
                c.lengths,
                c.batch,
                c.device,
                c.warmup,
                c.repeats,
            )
            results["model"] = {"command": command, "settings": model_settings, "rows": rows}
        if "generate" in c.whats:
            runs = {"teacher_kv_cache": (teacher, "kv_cache")}
            runs.update({f"student_{mode}": (student, mode) for mode in c.student_modes})
            rows = benchmark_generate(runs, c.lengths, c.new_tokens, c.warmup, c.device)
            results["generate"] = {
                "command": command,
                "settings": {**model_settings, "new_tokens": c.new_tokens},
                "rows": rows,
            }
    return results


# ------------------------------------------------------------------------------------- command line


def cli_arguments(parser: Any) -> None:
    """Options of `python -m hyena_lite benchmark`."""
    parser.add_argument(
        "--what",
        nargs="+",
        choices=WHATS,
        default=["operator"],
        help="operator: attention vs Hyena block; levers: what each Hyena speed-up buys; "
        "model: teacher vs student forward; generate: per-token decoding",
    )
    parser.add_argument(
        "--lengths",
        nargs="+",
        type=int,
        default=[256, 512, 1024],
        help="sequence lengths (operator, model) or context lengths (generate)",
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda"
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="precision")
    parser.add_argument("--batch", type=int, default=1, help="sequences per batch")
    parser.add_argument("--d-model", type=int, default=768, help="width (GPT-2-124M: 768)")
    parser.add_argument("--heads", type=int, default=12, help="attention heads")
    parser.add_argument("--layers", type=int, default=12, help="layers of the model benchmarks")
    parser.add_argument(
        "--vocab", type=int, default=50257, help="vocabulary of the model benchmarks"
    )
    parser.add_argument(
        "--no-backward", action="store_true", help="operator: time the forward only"
    )
    parser.add_argument(
        "--new-tokens", type=int, default=16, help="generate: timed new tokens per context"
    )
    parser.add_argument(
        "--student-modes",
        nargs="+",
        choices=sorted(DECODERS),
        default=["recompute"],
        help="generate: how the student decodes",
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs")
    parser.add_argument(
        "--kernels-at", type=int, default=None, help="levers: length of the kernel breakdown"
    )
    parser.add_argument("--json", metavar="FILE", help="write the results here (-: stdout)")


def cli_main(args: Any) -> int:
    """Run the benchmarks, print a table per benchmark and write the JSON."""
    config = BenchmarkConfig(
        whats=args.what,
        lengths=args.lengths,
        device=args.device,
        dtype=args.dtype,
        batch=args.batch,
        d_model=args.d_model,
        n_heads=args.heads,
        n_layers=args.layers,
        vocab_size=args.vocab,
        backward=not args.no_backward,
        new_tokens=args.new_tokens,
        student_modes=tuple(args.student_modes),
        warmup=args.warmup,
        repeats=args.repeats,
        kernels_at=args.kernels_at,
    )
    results = run_benchmark(config, command=_command_line(args))
    for what in WHATS:
        if what in results:
            print(format_table(results[what]["rows"], what))
    if args.json:
        print(f"wrote {save_results(args.json, results)}")
    return 0


def _command_line(args: Any) -> str:
    """The command that reproduces these parsed options, every option spelled out."""
    return command_line(["python", "-m", "hyena_lite", "benchmark"], vars(args))


def format_table(rows: list[dict[str, Any]], title: str = "") -> str:
    """Rows as a fixed-width text table (numbers to 4 significant digits; '-' where a point is
    missing). Taught in chapter 9."""
    if not rows:
        return f"{title}: no rows"
    keys = list(rows[0])
    cell = lambda v: "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    widths = [max(len(k), *(len(cell(r.get(k))) for r in rows)) for k in keys]
    lines = [title, "  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=False))]
    lines += [
        "  ".join(cell(r.get(k)).rjust(w) for k, w in zip(keys, widths, strict=False)) for r in rows
    ]
    return "\n".join(lines)
