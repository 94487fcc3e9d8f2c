"""Sphinx extension: the `chapter-map` directive, a table of chapters with a one-line summary each.

Content lines read `docname: summary`, docname relative to the page. A chapter that is part of
this build becomes a link; one that is not (left out of _toc.yml) is named in plain text, so the
map never breaks the build while chapters are being written.
"""
from __future__ import annotations

import posixpath
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


class ChapterMap(SphinxDirective):
    """Render `docname: summary` lines as a two-column MyST table."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        """Parse the content lines and emit the table through the page's own parser."""
        rows = ["| Chapter | What you will do |", "|---|---|"]
        here = posixpath.dirname(self.env.docname)
        for line in self.content:
            if not line.strip():
                continue
            name, sep, summary = line.partition(":")
            if not sep:
                raise self.error(f"chapter-map line {line!r} must read 'docname: summary'")
            name = name.strip()
            if posixpath.join(here, name) in self.env.found_docs:
                chapter = f"{{doc}}`{name}`"
            else:
                chapter = f"*{name}* (not in this build)"
            rows.append(f"| {chapter} | {summary.strip()} |")
        container = nodes.container(classes=["chapter-map"])
        self.state.nested_parse(StringList(rows, source=self.env.docname), self.content_offset, container)
        return [container]


def setup(app: Any) -> dict[str, Any]:
    """Register the directive."""
    app.add_directive("chapter-map", ChapterMap)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
