"""Sphinx extension: an "Open in Colab" badge under the title of every page made from a notebook.

The link is the one of the theme's Colab launch button (repository.url, repository.branch and launch_buttons
of _config.yml), shown where a reader starts instead of in a menu of the header.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from docutils import nodes
from sphinx.errors import ConfigError

# The Colab logo that sphinx-book-theme ships in _static, so the badge needs no network.
LOGO = "_static/images/logo_colab.png"
BADGE = ('<p class="colab-badge"><a href="{url}" title="Open this chapter in Google Colab">'
         '<img src="{logo}" alt="" style="height:1.2em;vertical-align:-0.2em;margin-right:0.3em">'
         "Open in Colab</a></p>")


def colab_url(theme: dict[str, Any], docname: str) -> str:
    """The Colab address of a notebook, from the theme's repository and launch-button settings."""
    colab = theme.get("launch_buttons", {}).get("colab_url", "").rstrip("/")
    parts = urlsplit(theme.get("repository_url", ""))
    owner_repo = parts.path.strip("/")
    if not colab or parts.netloc != "github.com" or owner_repo.count("/") != 1:
        raise ConfigError("the Colab badge needs launch_buttons.colab_url and a github.com "
                          "repository.url in _config.yml")
    branch = theme.get("repository_branch", "main")
    docs = theme.get("path_to_docs", "").strip("/")
    path = f"{docs}/{docname}.ipynb" if docs else f"{docname}.ipynb"
    return f"{colab}/github/{owner_repo}/blob/{branch}/{path}"


def _add_badge(app: Any, doctree: nodes.document) -> None:
    """Insert the badge after the first title of a page whose source is an .ipynb file."""
    docname = app.env.docname
    if Path(app.env.doc2path(docname)).suffix != ".ipynb":
        return
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None:
        return
    logo = "../" * docname.count("/") + LOGO
    html = BADGE.format(url=colab_url(app.config.html_theme_options, docname), logo=logo)
    section.insert(1, nodes.raw("", html, format="html"))


def setup(app: Any) -> dict[str, Any]:
    """Register the hook that adds the badge while each page is read."""
    app.connect("doctree-read", _add_badge)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
