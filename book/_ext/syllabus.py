"""Sphinx extension: the `syllabus` directive, a table of lectures with each chapter's slides and
its measured time in every profile, read from the results files when the book is built.

Content lines read `week | lecture | chapter prefixes` (e.g. `1 | Why attention is expensive | 01 02`);
every chapter of book/ must be in exactly one lecture. Times come from hyena_lite/results/:
book_smoke.json, book_gpu_h200.json (with its T4 estimate) and book_cpu.json, each written by
scripts/run_book.py; a profile whose file is missing is said to be not measured yet, never guessed.
"""
from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

PROFILES = {  # column title: results file
    "smoke": "book_smoke.json",
    "gpu (H200; T4 estimate)": "book_gpu_h200.json",
    "cpu": "book_cpu.json",
}
SLIDES = "slides/{}.slides.html"  # under the built site's root, by scripts/build_slides.py


def parse_lectures(lines: list[str]) -> list[tuple[str, str, list[str]]]:
    """(week, lecture, chapter prefixes) of each `week | lecture | prefixes` line."""
    lectures = []
    for line in filter(str.strip, lines):
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 3 or not parts[2]:
            raise ValueError(f"syllabus line {line!r} must read 'week | lecture | 01 02'")
        lectures.append((parts[0], parts[1], parts[2].split()))
    return lectures


def assign_chapters(
    lectures: list[tuple[str, str, list[str]]], chapters: list[str]
) -> list[list[str]]:
    """The chapters of each lecture; raises ValueError on a prefix that names no chapter, or on a
    chapter in no lecture or in two."""
    assigned = []
    for week, _, prefixes in lectures:
        found = []
        for prefix in prefixes:
            match = [c for c in chapters if c.startswith(prefix)]
            if len(match) != 1:
                raise ValueError(f"week {week}: {prefix!r} names {len(match)} chapters of {chapters}")
            found += match
        assigned.append(found)
    counted = [c for found in assigned for c in found]
    wrong = [c for c in chapters if counted.count(c) != 1]
    if wrong:
        raise ValueError(f"every chapter must be in exactly one lecture: {wrong} are not")
    return assigned


def load_times(path: Path) -> dict | None:
    """A run_book.py record with its chapters by name, or None when the file does not exist."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    record["by_chapter"] = {c["chapter"]: c for c in record.get("chapters", [])}
    return record


def duration(seconds: float) -> str:
    """'42 s' or '3 min 05 s'."""
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def time_cell(record: dict | None, chapter: str) -> str:
    """A chapter's measured time in one profile's record, its T4 estimate when the record has
    one, or why there is no time."""
    if record is None:
        return "being measured"
    run = record["by_chapter"].get(chapter)
    if run is None or run.get("seconds") is None:
        return "not measured"
    text = duration(run["seconds"])
    if not run["ok"]:
        return f"failed after {text}"
    if run.get("t4_estimate_minutes") is not None:
        text += f" (T4 ~{run['t4_estimate_minutes']:.0f} min)"
    return text


def syllabus_rows(
    lectures: list[tuple[str, str, list[str]]],
    assigned: list[list[str]],
    records: dict[str, dict | None],
    here: str,
) -> list[str]:
    """The MyST table: one row per chapter, the week and lecture on its first chapter's row;
    `here` is the folder of the page, for the links."""
    head = ["week", "lecture", "chapter", "slides", *records]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (week, lecture, _), chapters in zip(lectures, assigned, strict=True):
        for i, chapter in enumerate(chapters):
            slides = posixpath.relpath(SLIDES.format(chapter), here or ".")
            cells = [
                week if i == 0 else "",
                lecture if i == 0 else "",
                f"{{doc}}`/book/{chapter}`",
                f'<a href="{slides}">slides</a>',
                *(time_cell(r, chapter) for r in records.values()),
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return rows


def sources(records: dict[str, dict | None]) -> list[str]:
    """One sentence per profile: where its times come from, or that they are being measured."""
    lines = []
    for title, name in PROFILES.items():
        record = records[title]
        if record is None:
            lines.append(
                f"- {title}: being re-measured; this column will be read from "
                f"`hyena_lite/results/{name}` once that run is committed."
            )
            continue
        notes = f" Its notes: {record['notes']}" if record.get("notes") else ""
        lines.append(
            f"- {title}: `hyena_lite/results/{name}`, profile {record.get('profile', '?')}, "
            f"commit {str(record.get('commit', '?'))[:10]}, on {record.get('hardware', '?')}.{notes}"
        )
    return lines


class Syllabus(SphinxDirective):
    """The syllabus table and the sources of its times."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        """Check the lectures against the chapters, read the times, emit the table through MyST."""
        root = Path(self.env.app.confdir)
        chapters = sorted(p.stem for p in (root / "book").glob("[0-9][0-9]_*.ipynb"))
        results = root / "hyena_lite" / "results"
        records = {}
        for title, name in PROFILES.items():
            records[title] = load_times(results / name)
            self.env.note_dependency(str(results / name))
        try:
            lectures = parse_lectures(list(self.content))
            assigned = assign_chapters(lectures, chapters)
        except ValueError as error:
            raise self.error(str(error)) from None
        here = posixpath.dirname(self.env.docname)
        lines = [*syllabus_rows(lectures, assigned, records, here), "", *sources(records)]
        container = nodes.container(classes=["syllabus"])
        self.state.nested_parse(StringList(lines, source=self.env.docname), self.content_offset, container)
        return [container]


def setup(app: Any) -> dict[str, Any]:
    """Register the directive."""
    app.add_directive("syllabus", Syllabus)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
