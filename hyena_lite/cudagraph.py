"""Recording a function as a CUDA graph, the one way the library does it.

A graph replays a recorded sequence of kernels with one launch, so a step costs no CPU time per
kernel; it reads and writes the same memory every replay. Chapters 9 and 10 use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def record(
    fn: Callable[[], T],
    device: str | torch.device,
    warmup: int = 1,
    before_recording: Callable[[], None] | None = None,
) -> tuple[torch.cuda.CUDAGraph, T]:
    """Call fn `warmup` times on a side stream (as recording requires: FFT plans, cuBLAS handles
    and compiled kernels exist before it), then `before_recording()` (to undo what the warm-up
    changed), then record one call (recording runs nothing on the GPU). Returns the graph and that
    call's output tensors, which hold values only once `graph.replay()` has run and are
    overwritten by every replay."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"CUDA graphs record CUDA work; got device {device}")
    side, main = torch.cuda.Stream(device), torch.cuda.current_stream(device)
    side.wait_stream(main)
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    main.wait_stream(side)
    if before_recording is not None:
        before_recording()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out
