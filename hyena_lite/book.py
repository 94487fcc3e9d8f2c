"""What the book's chapters share: small helpers that would otherwise be copied between them.

Each chapter that first builds an idea keeps its own teaching code and asserts that the helper
here agrees with it; the chapters after it import the helper. The docstrings name the chapters.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Iterator, Sequence

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from hyena_lite.data import iterate_batches
from hyena_lite.experiments import bench

# One hatching per bar group (chapters 5, 8 and 11), so that bars read without colour.
HATCHES = ("", "//", "..", "xx", "\\\\")


def toeplitz(h: Tensor, skip: float | Tensor = 0.0) -> Tensor:
    """The causal convolution with filter h as an [L, L] matrix: T[t, s] = h[t - s] for s <= t.

    `skip` adds D * I (the operator's skip term). Chapter 3 builds it; chapter 4 multiplies
    these matrices and the gates' diagonals into the Hyena matrix H(u).
    """
    if h.dim() != 1:
        raise ValueError(f"h must be one filter of shape [L], got shape {tuple(h.shape)}")
    lag = torch.arange(len(h))[:, None] - torch.arange(len(h))[None, :]
    causal = torch.where(lag >= 0, h[lag.clamp(min=0)], torch.zeros((), dtype=h.dtype))
    return causal + skip * torch.eye(len(h), dtype=h.dtype)


def live_batches(
    tokens: Tensor, batch_size: int, seq_len: int, seed: int
) -> Callable[[int], Iterator[Tensor]]:
    """A chapter's stream of training batches: `stream(k)` starts at batch k.

    Batch k depends only on (seed, k) (see `data.iterate_batches`), so every live run of a
    chapter sees the same batches. Chapters 6 and 7 train on it.
    """

    def stream(start: int) -> Iterator[Tensor]:
        return iterate_batches(tokens, batch_size, seq_len, seed, start_step=start)

    return stream


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of log(y) against log(x): the measured exponent of y ~ x^p.

    With two points it is the slope between them. Chapters 2 (attention against the MLP) and
    3 (the direct sum against the FFT) read how a time grows with the sequence length.
    """
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"need two or more (x, y) pairs, got {len(xs)} x and {len(ys)} y")
    if min(xs) <= 0 or min(ys) <= 0:
        raise ValueError("a log-log slope needs positive x and y; drop zero or negative values")
    lx = torch.log(torch.tensor([float(x) for x in xs], dtype=torch.float64))
    ly = torch.log(torch.tensor([float(y) for y in ys], dtype=torch.float64))
    lx, ly = lx - lx.mean(), ly - ly.mean()
    if not bool((lx != 0).any()):
        raise ValueError(f"all x are equal ({xs[0]}): a slope needs at least two different x")
    return float((lx * ly).sum() / (lx * lx).sum())


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls of fn on the CPU, after one warm-up call.

    The minimum suits a CPU shared with other work: interruptions only ever add time.
    Chapter 3 times the direct sum against the FFT with it; chapter 9 teaches the timing.
    """
    return min(bench.measure(fn, "cpu", warmup=1, repeats=repeats).times_ms) / 1e3


def hatch_bars(ax, hatches: Sequence[str] = HATCHES) -> None:
    """Give each bar group of a pandas bar plot its own hatching (one group per model).

    Chapters 5 and 11 draw their bar charts with it (chapter 8 takes HATCHES for its own);
    call `ax.legend()` afterwards so that the legend shows the hatching too.
    """
    for bars, hatch in zip(ax.containers, hatches, strict=False):
        for bar in bars:
            bar.set_hatch(hatch)


def figure_html(fig, alt: str) -> str:
    """The figure as an HTML <img> (PNG inline) with alt text; closes the figure.

    An interactive widget's output saved in the book keeps the alt text this way (plt.show()
    would not). Chapter 4's filter explorer shows its figures with it.
    """
    if not alt.strip():
        raise ValueError("give the figure an alt text that says what it shows")
    png = io.BytesIO()
    fig.savefig(png, format="png", bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(png.getvalue()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
