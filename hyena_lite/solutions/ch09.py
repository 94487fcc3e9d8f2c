"""Chapter 9's solutions: the crossover of two timing series, a correct timing, a prediction of
attention's time at 64K tokens, reading the peak-memory plot, and the FFT as matrix products in
any number of stages."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch


def crossover(rows: list[dict], x: str, a: str, b: str) -> float | None:
    """The first x where series b is no slower than a, interpolated on log-log axes."""
    points = sorted((r[x], r[a], r[b]) for r in rows if r[a] is not None and r[b] is not None)
    for i, (xi, ai, bi) in enumerate(points):
        if bi <= ai:
            if i == 0:
                return float(xi)
            x0, a0, b0 = points[i - 1]
            d0, d1 = math.log(b0 / a0), math.log(bi / ai)
            return math.exp(math.log(x0) + d0 / (d0 - d1) * (math.log(xi) - math.log(x0)))
    return None


def median_ms(fn: Callable[[], object], warmup: int = 2, repeats: int = 5) -> float:
    """Untimed warm-up calls, then the median of timed calls, in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(statistics.median(times))


def attention_at_64k(ms_at_16k: float) -> float:
    """Attention's time grows like L^2: four times the length, sixteen times the time. (The
    measurement is a little lower: the projections' 8 L d^2 part grows only like L.)"""
    return ms_at_16k * (65536 / 16384) ** 2


def peak_ratio(row: dict) -> float:
    """Hyena's forward peak memory over attention's, in one row of the operator benchmark."""
    return row["hyena_peak_mb"] / row["attn_peak_mb"]


def split_fft(x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """The FFT of x [..., n], n = the product of `sizes`, by matrix products: the first size's DFT
    down the columns of x read as [n1, n / n1], twiddles, then every row by the other sizes (the
    same function again); one size left is one DFT matrix."""
    n, n1 = x.shape[-1], sizes[0]
    if math.prod(sizes) != n:
        raise ValueError(f"the sizes {sizes} multiply to {math.prod(sizes)}, not {n}")
    t = torch.arange(n1, dtype=torch.float64)
    dft = torch.exp(-2j * math.pi * torch.outer(t, t) / n1)
    if len(sizes) == 1:
        return x.to(torch.complex128) @ dft  # symmetric: the rows' DFT
    m = n // n1
    grid = dft @ x.to(torch.complex128).reshape(*x.shape[:-1], n1, m)
    j = torch.arange(m, dtype=torch.float64)
    grid = grid * torch.exp(-2j * math.pi * torch.outer(t, j) / n)
    rows = split_fft(grid, sizes[1:])  # rows[k1, k'] = X[k1 + n1 k']
    return rows.transpose(-1, -2).reshape(*x.shape[:-1], n)
