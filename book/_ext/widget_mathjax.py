"""Sphinx extension: let saved ipywidgets typeset their labels with the book's MathJax 3.

The ipywidgets 8 HTML manager calls the MathJax 2 API (`MathJax.Hub.Queue`) whenever MathJax
is present; the book loads MathJax 3, so every widget page would raise a JavaScript error.
This adds a small `MathJax.Hub.Queue` that forwards "Typeset" commands to MathJax 3.
"""
from __future__ import annotations

from typing import Any

MATHJAX2_QUEUE_SHIM = """
document.addEventListener("DOMContentLoaded", () => {
  const mathjax = window.MathJax;
  if (!mathjax || mathjax.Hub || !mathjax.startup) return;
  mathjax.Hub = {Queue: (...commands) => {
    for (const [name, , element] of commands) {
      if (name === "Typeset") {
        mathjax.startup.promise.then(() => mathjax.typesetPromise(element ? [element] : undefined));
      }
    }
  }};
});
"""


def setup(app: Any) -> dict[str, Any]:
    """Add the shim to every page (it does nothing where MathJax 3 is absent)."""
    app.add_js_file(None, body=MATHJAX2_QUEUE_SHIM)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
