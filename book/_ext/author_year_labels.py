"""Sphinx extension: label the bibliography "Poli et al., 2023", as the text cites it.

Registers a pybtex formatting style `author_year` (pybtex's `plain`, sorted by author, year and
title) whose labels match sphinxcontrib-bibtex's author_year citations; select it with
`bibtex_default_style: author_year`.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person: Any) -> str:
    """A person's last name as plain text (LaTeX accents decoded)."""
    return " ".join(part.render_as("text") for part in person.rich_last_names)


def author_year_label(entry: Any) -> str:
    """"Hinton et al., 2015", "Dao and Fu, 2022" or "Radford, 2019" for one entry."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    year = entry.fields.get("year", "n.d.")
    if not people:
        return f"{entry.fields.get('title', entry.key)}, {year}"
    if len(people) == 1:
        names = _surname(people[0])
    elif len(people) == 2:
        names = f"{_surname(people[0])} and {_surname(people[1])}"
    else:
        names = f"{_surname(people[0])} et al."
    return f"{names}, {year}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """Author-year labels for pybtex."""

    def format_labels(self, sorted_entries: Iterable[Any]) -> Iterator[str]:
        """One label per entry, in order."""
        for entry in sorted_entries:
            yield author_year_label(entry)


class AuthorYearStyle(PlainStyle):
    """pybtex's plain style with author-year labels."""

    default_label_style = "author_year"


def setup(app: Any) -> dict[str, Any]:
    """Register the label and formatting styles with pybtex."""
    register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
