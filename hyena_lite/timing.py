"""Timing a call the way the speed results report it: the median time per call and its interquartile
range over blocks of back-to-back calls, measured by torch.utils.benchmark (which synchronises the
accelerator around each block).

A decoding step advances a state of bounded size (a static key-value cache, learned positions), so
`time_call` can put the state back (`reset`) before every block, outside the timed calls.
`measured_row` gives a kernel benchmark's row its timing columns, from a CUDA graph's replays.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.benchmark import Timer

from hyena_lite.cudagraph import record


@dataclass
class Timing:
    """Median and interquartile range of the time per call (ms), over `blocks` blocks of `calls`
    calls each."""

    median_ms: float
    iqr_ms: float
    calls: int
    blocks: int

    def as_row(self, prefix: str) -> dict[str, Any]:
        """The timing as result columns `{prefix}_ms` and `{prefix}_iqr_ms`."""
        return {f"{prefix}_ms": self.median_ms, f"{prefix}_iqr_ms": self.iqr_ms}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calls_per_block(fn: Callable[[], Any], block_s: float, max_calls: int) -> int:
    """How many back-to-back calls of fn fill about `block_s` seconds (at least 1, at most
    max_calls), from one timed call after one untimed one."""
    timer = Timer(stmt="fn()", globals={"fn": fn})
    seconds = timer.timeit(1).median  # runs 2 warm-up calls, then times one
    return max(1, min(max_calls, int(block_s / max(seconds, 1e-7))))


def time_call(
    fn: Callable[[], Any],
    reset: Callable[[], None] | None = None,
    blocks: int = 7,
    block_s: float = 0.03,
    max_calls: int = 200,
) -> Timing:
    """Time fn: `blocks` blocks of back-to-back calls, each filling about `block_s` seconds (at most
    `max_calls` calls, plus torch.utils.benchmark's 2 or more warm-up calls before each block), with
    `reset()` run before each block and outside the timing. Returns the median and interquartile
    range of the per-call time over blocks."""
    if blocks < 1 or block_s <= 0 or max_calls < 1:
        raise ValueError(
            f"need blocks >= 1, block_s > 0 and max_calls >= 1, got {blocks}, {block_s}, "
            f"{max_calls}"
        )
    if reset is not None:
        reset()
    calls = calls_per_block(fn, block_s, max_calls)
    timer = Timer(stmt="fn()", globals={"fn": fn})
    per_call = []
    for _ in range(blocks):
        if reset is not None:
            reset()
        per_call.append(timer.timeit(calls).median * 1e3)  # one block: its time per call
    if len(per_call) >= 2:
        q1, _, q3 = statistics.quantiles(per_call, n=4, method="inclusive")
    else:
        q1 = q3 = per_call[0]
    return Timing(statistics.median(per_call), q3 - q1, calls, blocks)


def warmup_calls(calls: int) -> int:
    """How many calls torch.utils.benchmark's Timer.timeit(calls) makes before its timed ones."""
    return max(calls // 100, 2)


def measured_row(
    fn: Callable[[], torch.Tensor], device: torch.device, blocks: int, reference: torch.Tensor
) -> dict[str, Any]:
    """A benchmark row's timing columns for fn: recorded as a CUDA graph and its replays timed on
    CUDA (fn itself, a few calls a block, elsewhere), `ms` and `iqr_ms`, and `max_abs_diff`, the
    largest difference of its output from `reference`; or `error` (a failure is a result)."""
    try:
        if device.type == "cuda":
            graph, out = record(fn, device, warmup=3)
            timing = time_call(graph.replay, blocks=blocks)
            graph.replay()
        else:
            timing, out = time_call(fn, blocks=blocks, block_s=0.01, max_calls=3), fn()
    except Exception as error:  # noqa: BLE001  a failure is a result to report, not a crash
        return {"error": f"{type(error).__name__}: {error}"[:500]}
    difference = (out.float() - reference.float()).abs().max().item()
    return {"ms": timing.median_ms, "iqr_ms": timing.iqr_ms, "max_abs_diff": difference}
