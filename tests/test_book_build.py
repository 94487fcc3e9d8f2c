"""`make book`'s build (scripts/build_book.sh) fails when a chapter raises, though jupyter-book
exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

BUILD = Path(__file__).resolve().parent.parent / "scripts" / "build_book.sh"
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"
CONFIG = """title: tiny
only_build_toc_files: true
execute:
  execute_notebooks: force
  allow_errors: false
"""
TOC = "format: jb-book\nroot: intro\nchapters:\n  - file: chapter\n"


def tiny_book(folder: Path, cell: str) -> Path:
    """A book of an intro page and one chapter whose only code cell is `cell`, configured as
    ours is."""
    (folder / "_config.yml").write_text(CONFIG)
    (folder / "_toc.yml").write_text(TOC)
    (folder / "intro.md").write_text("# Intro\n")
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# Chapter"), nbformat.v4.new_code_cell(cell)]
    )
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, folder / "chapter.ipynb")
    return folder


def build(book: Path, options: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(BUILD), str(JUPYTER_BOOK), str(book), *options],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(
    not JUPYTER_BOOK.exists(), reason="jupyter-book is not installed beside this Python"
)
@pytest.mark.parametrize(
    "options", [[], ["-W", "-n", "--keep-going"]], ids=["make-book", "make-book-smoke"]
)
def test_a_raising_chapter_fails_the_build_and_a_fixed_one_passes(tmp_path, options):
    book = tiny_book(tmp_path, "raise AssertionError('planted failure')")
    failed = build(book, options)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "chapters raised" in failed.stderr and "chapter.err.log" in failed.stderr
    assert "planted failure" in (book / "_build/html/reports/chapter.err.log").read_text()

    tiny_book(
        tmp_path, "print(1 + 1)"
    )  # the same book fixed: its stale report must not fail the new build
    passed = build(book, options)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert (book / "_build/html/chapter.html").is_file()


def test_the_build_script_says_how_to_call_it():
    result = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True)
    assert result.returncode == 2 and "usage:" in result.stderr


def test_make_book_and_book_smoke_build_through_the_script_then_make_the_slides():
    makefile = (BUILD.parent.parent / "Makefile").read_text()
    slides = makefile.split("\nSLIDES := ", 1)[1].split("\n", 1)[0]
    assert slides.endswith("scripts/build_slides.py _build/jupyter_execute/book _build/html/slides")
    for target in ("book", "book-smoke"):
        recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        assert "scripts/build_book.sh $(VENV)/bin/jupyter-book ." in recipe, recipe
        assert "jupyter-book build" not in recipe, recipe
        assert recipe.index("build_book.sh") < recipe.index("$(SLIDES)"), recipe
