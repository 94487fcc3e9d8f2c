"""Sphinx extension: drop repeated <script> tags from each page.

With Sphinx 7.4 an inline script added by an extension (sphinx-thebe's `const THEBE_JS_URL`,
sphinx-togglebutton's selector) is emitted twice, once with filename None and once with '',
and redeclaring a `const` is a JavaScript error on every page.
"""
from __future__ import annotations

from typing import Any


def _drop_repeated_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Keep the first of scripts that have the same source, body and attributes."""
    seen: set[tuple] = set()
    unique = []
    for script in context.get("script_files", []):
        key = (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Any) -> dict[str, Any]:
    """Register the page hook."""
    app.connect("html-page-context", _drop_repeated_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
