"""The helpers the chapters share (hyena_lite.book): values, edge cases and their errors."""

from __future__ import annotations

import ast
import inspect
import json
import re
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from hyena_lite import book, direct_conv
from hyena_lite.data import iterate_batches


@pytest.mark.parametrize("length", [1, 2, 9, 40])
def test_toeplitz_times_u_is_the_causal_convolution(length: int) -> None:
    gen = torch.Generator().manual_seed(length)
    h, u, skip = torch.randn(length, generator=gen), torch.randn(length, generator=gen), 0.7
    matrix = book.toeplitz(h, skip)
    want = direct_conv(u[None, None], h[None], torch.tensor([skip]))[0, 0]
    assert torch.allclose(matrix @ u, want, atol=1e-5)
    assert torch.equal(matrix, torch.tril(matrix)), "nothing above the diagonal: causal"
    assert torch.allclose(book.toeplitz(h) + skip * torch.eye(length), matrix)


def test_toeplitz_keeps_the_filters_dtype_and_rejects_a_batch() -> None:
    h = torch.randn(5, dtype=torch.float64)
    assert book.toeplitz(h, torch.tensor(0.5, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match=r"one filter of shape \[L\]"):
        book.toeplitz(torch.randn(2, 5))


def test_live_batches_resume_at_any_batch() -> None:
    tokens = torch.arange(1000)
    stream = book.live_batches(tokens, batch_size=3, seq_len=16, seed=4)
    first = [batch for _, batch in zip(range(5), stream(0), strict=False)]
    assert all(batch.shape == (3, 16) for batch in first)
    assert torch.equal(next(stream(3)), first[3]), "stream(k) must start at batch k"
    assert torch.equal(first[1], next(iterate_batches(tokens, 3, 16, 4, start_step=1)))
    other_seed = book.live_batches(tokens, batch_size=3, seq_len=16, seed=5)
    assert not torch.equal(next(other_seed(0)), first[0])


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_loglog_slope_recovers_a_power_law(power: float) -> None:
    xs = [16, 32, 64, 128, 256]
    assert book.loglog_slope(xs, [3.0 * x**power for x in xs]) == pytest.approx(power)
    assert book.loglog_slope(xs[-2:], [x**power for x in xs[-2:]]) == pytest.approx(power)


def test_loglog_slope_fits_noisy_points_by_least_squares() -> None:
    xs, ys = [1.0, 2.0, 4.0], [1.0, 4.0, 8.0]  # log2: (0, 0), (1, 2), (2, 3)
    assert book.loglog_slope(xs, ys) == pytest.approx(1.5)  # least squares, not the last pair's 1


@pytest.mark.parametrize(
    "xs, ys, message",
    [
        ([1.0], [1.0], "two or more"),
        ([1.0, 2.0], [1.0], "two or more"),
        ([0.0, 2.0], [1.0, 2.0], "positive"),
        ([1.0, 2.0], [-1.0, 2.0], "positive"),
        ([3.0, 3.0], [1.0, 2.0], "two different x"),
    ],
)
def test_loglog_slope_says_what_is_wrong(xs, ys, message) -> None:
    with pytest.raises(ValueError, match=message):
        book.loglog_slope(xs, ys)


def test_best_seconds_warms_up_once_and_keeps_the_fastest_call() -> None:
    pauses = iter([0.08, 0.03, 0.002, 0.03])  # the warm-up call, then three timed calls
    calls = []

    def work() -> None:
        calls.append(1)
        time.sleep(next(pauses))

    seconds = book.best_seconds(work, repeats=3)
    assert len(calls) == 4
    assert 0.002 <= seconds < 0.02, f"{seconds:.4f} s is not the fastest call's 2 ms"
    with pytest.raises(ValueError, match="repeats"):
        book.best_seconds(lambda: None, repeats=0)


def test_hatch_bars_gives_each_model_its_own_hatching() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": [2, 3], "c": [3, 1]}, index=["x", "y"])
    ax = frame.plot.bar()
    book.hatch_bars(ax)
    hatches = [{bar.get_hatch() or "" for bar in bars} for bars in ax.containers]
    assert hatches == [{""}, {"//"}, {".."}]
    plt.close(ax.figure)


def test_figure_html_keeps_the_alt_text_and_closes_the_figure() -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    tag = book.figure_html(fig, 'a line from "1" down to 0 & back')
    assert tag.startswith('<img src="data:image/png;base64,iVBOR')  # a PNG's signature
    assert tag.endswith('alt="a line from &quot;1&quot; down to 0 &amp; back">')
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(ValueError, match="alt text"):
        book.figure_html(plt.figure(), "  ")


BOOK_DIR = Path(__file__).resolve().parent.parent / "book"
# The chapter that builds a helper step by step keeps its own version and asserts that they agree.
BUILDERS = {"toeplitz": "03_long_convolutions.ipynb"}


def chapter_functions(path: Path) -> set[str]:
    """Names of the functions a chapter's code cells define."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    trees = [ast.parse(re.sub(r"^[%!].*$", "", source, flags=re.MULTILINE)) for source in code]
    return {
        node.name for tree in trees for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
    }


def test_chapters_import_the_shared_helpers_instead_of_copying_them() -> None:
    shared = {
        name
        for name, value in vars(book).items()
        if inspect.isfunction(value) and value.__module__ == book.__name__
    }
    copies = {
        path.name: sorted(
            shared
            & chapter_functions(path)
            - {name for name, builder in BUILDERS.items() if builder == path.name}
        )
        for path in sorted(BOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    }
    assert not any(copies.values()), (
        f"chapters define their own copies of hyena_lite.book's helpers: "
        f"{ {k: v for k, v in copies.items() if v} }; import them from hyena_lite.book"
    )
    assert "toeplitz" in chapter_functions(BOOK_DIR / BUILDERS["toeplitz"])
