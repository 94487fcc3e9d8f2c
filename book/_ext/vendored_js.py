"""Sphinx extension: stop with a clear message when the JavaScript bundled with the book is missing.

The book serves MathJax 3 and the ipywidgets HTML manager itself (html_extra_path in _config.yml),
and reveal.js for the chapters' slides, so that its pages work offline; `make book-js` fetches
them from the npm registry.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.errors import ConfigError

REQUIRED = (
    "_static/mathjax/tex-mml-chtml.js",
    "_static/ipywidgets/embed.js",
    "_static/reveal.js/dist/reveal.js",  # the chapters' slides (scripts/build_slides.py)
)


def _check_vendored(app: Any, config: Any) -> None:
    """Raise if an html_extra_path folder lacks a bundled script (before Sphinx drops missing ones)."""
    for folder in config.html_extra_path:
        root = Path(app.confdir, folder)
        missing = [name for name in REQUIRED if not (root / name).is_file()]
        if missing:
            raise ConfigError(f"{', '.join(missing)} missing under {root}: run `make book-js` "
                              "(it fetches MathJax, the ipywidgets HTML manager and reveal.js from npm)")


def setup(app: Any) -> dict[str, Any]:
    """Check once the configuration is read, before Sphinx's own check (priority 800) drops the path."""
    app.connect("config-inited", _check_vendored, priority=700)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
