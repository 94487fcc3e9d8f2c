"""Sphinx extension: the `exercise-list` directive, the exercises of every chapter in this build.

It reads the chapter notebooks when the book is built, so the list never drifts from the book:
each chapter (a link) with the titles of its exercises, the markdown headings that start with
"Exercise", and how many answers its checkers test (calls of `attempt(`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

EXERCISE_HEADING = re.compile(r"^#{2,4} (Exercise\b.*)$", re.M)
CHECKED_ANSWER = re.compile(r"\battempt\(")


def chapter_exercises(notebook: Path) -> tuple[list[str], int]:
    """The exercise titles of a notebook and its number of checked answers."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    titles, checked = [], 0
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            titles += EXERCISE_HEADING.findall(source)
        elif cell["cell_type"] == "code":
            checked += len(CHECKED_ANSWER.findall(source))
    return titles, checked


class ExerciseList(SphinxDirective):
    """A bullet list: each chapter with exercises, then its exercise titles."""

    def run(self) -> list[nodes.Node]:
        """Scan the notebooks of this build in name order and emit the list through MyST."""
        lines = []
        for docname in sorted(self.env.found_docs):
            path = Path(self.env.doc2path(docname))
            if path.suffix != ".ipynb":
                continue
            self.env.note_dependency(str(path))
            titles, checked = chapter_exercises(path)
            if not titles and not checked:
                continue
            here = Path(self.env.docname).parent
            link = Path(docname).relative_to(here) if Path(docname).is_relative_to(here) else f"/{docname}"
            lines.append(f"- {{doc}}`{link}`: {checked} checked answers")
            lines += [f"  - {title}" for title in titles]
        if not lines:
            lines = ["No chapter of this build has exercises yet."]
        container = nodes.container(classes=["exercise-list"])
        self.state.nested_parse(StringList(lines, source=self.env.docname), self.content_offset, container)
        return [container]


def setup(app: Any) -> dict[str, Any]:
    """Register the directive."""
    app.add_directive("exercise-list", ExerciseList)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
