"""Slides of every chapter, made from the executed notebooks of a book build with nbconvert's
reveal.js exporter, so that they show the outputs the book shows.

    python scripts/build_slides.py _build/jupyter_execute/book _build/html/slides

Each `#` or `##` heading starts a slide (a markdown cell is split at its headings), each other
markdown cell a sub-slide below it, and code cells stay with the prose before them (folded when
longer than FOLD_CODE_LINES lines, so that the slide shows their output); the Colab and
`parameters` cells are skipped and stderr (warnings, progress bars) is dropped, as the book drops
them. The slide metadata is generated here, on a copy; the chapters in book/ are never edited.
MyST roles that plain Markdown lacks become text: {cite:p}`key` an author-year label read from
book/references.bib, {term}`word` the word. The template (scripts/slides_template) loads
reveal.js, MathJax and the ipywidgets manager from the book's own _static folder (`make book-js`
fetches them from npm), so the slides work offline.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "book" / "_ext"))
from widget_mathjax import MATHJAX2_QUEUE_SHIM  # noqa: E402  (the book's pages use it too)

TEMPLATES = Path(__file__).resolve().parent / "slides_template"
TEMPLATE = "hyena_slides"
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"
FOLD_CODE_LINES = 12  # a longer code cell is folded under its first line, to show its output
COLAB_MARK = "# Colab only:"
SLIDE_HEADING = re.compile(r"^#{1,2} ", re.M)
ROLE = re.compile(r"\{([a-z]+)(?::[a-z]+)?\}`([^`]*)`")
BIB_ENTRY = re.compile(r"@\w+\{([^,\s]+),(.*?)\n\}", re.S)
BIB_FIELD = r"\b{}\s*=\s*\{{(.*?)\}}\s*,?\s*$"


def cite_labels(bib: Path) -> dict[str, str]:
    """Author-year labels ("Poli et al., 2023") of the entries of a BibTeX file, by key."""
    labels = {}
    for key, body in BIB_ENTRY.findall(bib.read_text(encoding="utf-8")):
        authors = re.search(BIB_FIELD.format("author"), body, re.M)
        year = re.search(BIB_FIELD.format("year"), body, re.M)
        if not (authors and year):
            continue
        names = [a.split(",")[0].strip(" {}") for a in authors.group(1).split(" and ")]
        first = re.sub(r"\{\\.\{?(\w)\}?\}", r"\1", names[0])  # R{\'e} -> Re
        etal = " et al." if len(names) > 2 else f" and {names[1]}" if len(names) == 2 else ""
        labels[key] = f"{first}{etal}, {year.group(1).strip('{}')}"
    return labels


def plain_markdown(text: str, labels: dict[str, str]) -> str:
    """The MyST roles of `text` as plain Markdown: citations as (author, year), terms as text."""

    def role(match: re.Match) -> str:
        name, content = match.groups()
        if name == "cite":
            keys = [k.strip() for k in content.split(",")]
            return "(" + "; ".join(labels.get(k, k) for k in keys) + ")"
        return re.sub(r"\s*<[^>]*>$", "", content)  # {term}`text <target>` -> text

    return ROLE.sub(role, text)


def split_at_headings(source: str) -> list[str]:
    """A markdown cell's text cut before each `#` or `##` heading (the pieces, in order)."""
    starts = sorted({0, *(m.start() for m in SLIDE_HEADING.finditer(source))})
    ends = [*starts[1:], len(source)]
    pieces = [source[a:b].strip("\n") for a, b in zip(starts, ends, strict=True)]
    return [p for p in pieces if p.strip()]


def slide_type(cell: nbformat.NotebookNode) -> str:
    """reveal.js's place for a cell: a heading starts a slide, other prose a sub-slide, code
    follows the prose before it, and the set-up cells are skipped."""
    source = cell.source
    if cell.cell_type == "code":
        setup = source.startswith(COLAB_MARK) or "parameters" in cell.metadata.get("tags", [])
        return "skip" if setup else "-"
    return "slide" if SLIDE_HEADING.match(source) else "subslide"


def as_slides(notebook: nbformat.NotebookNode, labels: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of an executed chapter with slide metadata, MyST roles as text and no stderr."""
    deck = copy.deepcopy(notebook)
    cells = []
    for cell in deck.cells:
        if cell.cell_type == "markdown":
            for piece in split_at_headings(plain_markdown(cell.source, labels)):
                cells.append(nbformat.v4.new_markdown_cell(piece))
        elif cell.cell_type == "code":
            cell.outputs = [
                o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")
            ]
            cells.append(cell)
    for cell in cells:
        cell.metadata["slideshow"] = {"slide_type": slide_type(cell)}
    deck.cells = cells
    return deck


def chapters_to_convert(executed: Path, book: Path) -> list[Path]:
    """The executed copy of every chapter in `book`; exits naming the chapters that have none."""
    names = [p.name for p in sorted(book.glob(CHAPTER_GLOB))]
    if not names:
        raise SystemExit(f"no chapters ({CHAPTER_GLOB}) in {book}")
    missing = [n for n in names if not (executed / n).is_file()]
    if missing:
        raise SystemExit(
            f"no executed copy of {', '.join(missing)} in {executed}: build the book first "
            "(`make book` or `make book-smoke`), which executes the chapters there"
        )
    return [executed / n for n in names]


def write_slides(
    executed: Path, out: Path, book: Path, bib: Path, static_prefix: str
) -> list[Path]:
    """Write out/<chapter>.slides.html for every chapter; the paths written."""
    from nbconvert import SlidesExporter

    labels = cite_labels(bib)
    exporter = SlidesExporter(
        extra_template_basedirs=[str(TEMPLATES)],
        template_name=TEMPLATE,
        reveal_url_prefix=f"{static_prefix}/reveal.js",
        reveal_theme="white",
        exclude_input_prompt=True,
        exclude_anchor_links=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in chapters_to_convert(executed, book):
        deck = as_slides(nbformat.read(path, as_version=4), labels)
        html, _ = exporter.from_notebook_node(
            deck,
            resources={
                "static_prefix": static_prefix,
                "fold_code_lines": FOLD_CODE_LINES,
                "mathjax2_shim": MATHJAX2_QUEUE_SHIM,
                "metadata": {"name": path.stem},
            },
        )
        target = out / f"{path.stem}.slides.html"
        target.write_text(html, encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: convert every chapter and print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "executed", type=Path, help="the executed chapters, e.g. _build/jupyter_execute/book"
    )
    parser.add_argument("out", type=Path, help="folder for the slides, e.g. _build/html/slides")
    parser.add_argument("--book", type=Path, default=ROOT / "book", help="the chapters' folder")
    parser.add_argument(
        "--bib", type=Path, default=ROOT / "book" / "references.bib", help="the citations"
    )
    parser.add_argument(
        "--static-prefix",
        default="../_static",
        help="URL of the book's _static folder as seen from the slides (default: ../_static)",
    )
    args = parser.parse_args(argv)
    written = write_slides(args.executed, args.out, args.book, args.bib, args.static_prefix)
    print(f"slides of {len(written)} chapters written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
