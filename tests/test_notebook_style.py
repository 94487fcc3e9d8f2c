"""The chapters' code reads without a horizontal scroll bar: code lines of at most 88 characters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
MAX_LINE = 88
# The Colab install cell is exempt while it carries the repository's install URL on one line.
EXEMPT_MARK = "# Colab only:"


def long_lines(notebook: dict, limit: int = MAX_LINE) -> list[tuple[int, int, str]]:
    """(cell index, line number, line) of every code line longer than `limit`, exempt
    cells aside."""
    found = []
    for index, cell in enumerate(notebook["cells"]):
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or source.startswith(EXEMPT_MARK):
            continue
        found += [
            (index, number, line)
            for number, line in enumerate(source.splitlines(), 1)
            if len(line) > limit
        ]
    return found


def test_there_are_chapters() -> None:
    assert len(CHAPTERS) >= 11, f"found only {[p.name for p in CHAPTERS]} in {BOOK}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_code_lines_fit_the_page(path: Path) -> None:
    found = long_lines(json.loads(path.read_text(encoding="utf-8")))
    shown = "\n".join(
        f"  cell {i}, line {n} ({len(line)} chars): {line.strip()[:60]}"
        for i, n, line in found[:10]
    )
    assert not found, (
        f"{path.name}: {len(found)} code lines exceed {MAX_LINE} characters and "
        f"scroll sideways in the book; wrap them (ruff format --line-length "
        f"{MAX_LINE} does most):\n{shown}"
    )


def test_long_lines_finds_code_but_not_markdown_or_the_colab_cell() -> None:
    long = "x = " + "1 + " * 30 + "1"
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": [long]},
            {"cell_type": "code", "source": [f"{EXEMPT_MARK} install\n", long]},
            {"cell_type": "code", "source": ["y = 1\n", long + "\n", "z = 2"]},
            {"cell_type": "code", "source": ["w = " + "2" * (MAX_LINE - 4)]},
        ]
    }
    assert long_lines(notebook) == [(2, 2, long)]
