"""scripts/build_slides.py: each `#`/`##` section of an executed chapter starts a slide, the set-up
cells and stderr are left out, MyST roles become text, and the deck loads nothing from the
network."""

from __future__ import annotations

import re

import nbformat
import pytest

BIB = """@article{poli2023hyena,
  title  = {{Hyena Hierarchy}},
  author = {Poli, Michael and Massaroli, Stefano and R{\\'e}, Christopher},
  year   = {2023}
}

@article{hinton2015distilling,
  author = {Hinton, Geoffrey and Vinyals, Oriol},
  year   = {2015}
}
"""


def chapter() -> nbformat.NotebookNode:
    """A small executed chapter: header, Colab and parameters cells, prose with two sections, a
    figure with alt text, stdout and stderr, and a long code cell."""
    v4 = nbformat.v4
    figure = v4.new_code_cell("plot()")
    figure.metadata["mystnb"] = {"image": {"alt": "a rising line"}}
    figure.outputs = [
        v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "fig"})
    ]
    talk = v4.new_code_cell("print(1)")
    talk.outputs = [
        v4.new_output("stream", name="stdout", text="1\n"),
        v4.new_output("stream", name="stderr", text="UserWarning: noisy\n"),
    ]
    parameters = v4.new_code_cell("PROFILE = None")
    parameters.metadata["tags"] = ["parameters"]
    return v4.new_notebook(
        cells=[
            v4.new_markdown_cell("# 1. A chapter\n\nAfter {cite:p}`poli2023hyena`."),
            v4.new_code_cell("# Colab only: install\npass"),
            parameters,
            v4.new_markdown_cell(
                "Intro, see {cite:p}`hinton2015distilling,poli2023hyena`.\n\n"
                "## First\n\nA {term}`long convolution <conv>`."
            ),
            talk,
            v4.new_markdown_cell("More prose."),
            figure,
            v4.new_markdown_cell("## Second\n\n$x^2$"),
            v4.new_code_cell("\n".join(f"step_{i} = {i}" for i in range(20))),
        ]
    )


@pytest.fixture
def slides(load_script):
    return load_script("build_slides")


def test_cite_labels_read_author_and_year(slides, tmp_path) -> None:
    (tmp_path / "refs.bib").write_text(BIB)
    assert slides.cite_labels(tmp_path / "refs.bib") == {
        "poli2023hyena": "Poli et al., 2023",
        "hinton2015distilling": "Hinton and Vinyals, 2015",
    }


def test_sections_start_slides_and_setup_cells_are_skipped(slides) -> None:
    labels = {"poli2023hyena": "Poli et al., 2023", "hinton2015distilling": "Hinton, 2015"}
    deck = slides.as_slides(chapter(), labels)
    kinds = [(c.cell_type, c.metadata["slideshow"]["slide_type"]) for c in deck.cells]
    assert kinds == [
        ("markdown", "slide"),  # the title
        ("code", "skip"),  # Colab
        ("code", "skip"),  # parameters
        ("markdown", "subslide"),  # "Intro ...", cut from its cell before "## First"
        ("markdown", "slide"),  # "## First"
        ("code", "-"),
        ("markdown", "subslide"),
        ("code", "-"),
        ("markdown", "slide"),  # "## Second"
        ("code", "-"),
    ]
    text = "\n".join(c.source for c in deck.cells)
    assert "(Poli et al., 2023)" in text and "(Hinton, 2015; Poli et al., 2023)" in text
    assert "A long convolution." in text and "{" not in text.replace("{cite", "")
    assert [o.name for o in deck.cells[5].outputs] == ["stdout"]  # stderr dropped
    assert "{cite:p}" in chapter().cells[0].source  # the input is not changed


def test_decks_load_only_the_books_own_scripts(slides, tmp_path) -> None:
    book, executed, out = tmp_path / "book", tmp_path / "executed", tmp_path / "html" / "slides"
    book.mkdir()
    executed.mkdir()
    (tmp_path / "refs.bib").write_text(BIB)
    for folder in (book, executed):
        nbformat.write(chapter(), folder / "01_chapter.ipynb")
    [written] = slides.write_slides(executed, out, book, tmp_path / "refs.bib", "../_static")
    html = written.read_text()
    assert written.name == "01_chapter.slides.html"
    sources = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert sources and not [s for s in sources if "//" in s and not s.startswith("data:")], sources
    assert '"../_static/reveal.js/dist/reveal.js"' in html
    assert '"../_static/mathjax/tex-mml-chtml.js"' in html
    assert 'alt="a rising line"' in html and "noisy" not in html
    assert html.count("<section") >= 4
    assert html.count('<details class="hyena-code">') == 1  # the 20-line cell, folded
    assert "(20 lines of code)" in html


def test_a_chapter_without_an_executed_copy_is_named(slides, tmp_path) -> None:
    (tmp_path / "book").mkdir()
    (tmp_path / "executed").mkdir()
    nbformat.write(chapter(), tmp_path / "book" / "02_missing.ipynb")
    with pytest.raises(SystemExit, match="no executed copy of 02_missing.ipynb"):
        slides.chapters_to_convert(tmp_path / "executed", tmp_path / "book")


def test_a_deck_with_widgets_loads_the_books_manager_and_mathjax_shim(slides, tmp_path) -> None:
    book, executed = tmp_path / "book", tmp_path / "executed"
    book.mkdir()
    executed.mkdir()
    (tmp_path / "refs.bib").write_text(BIB)
    notebook = chapter()
    state = {"state": {}, "version_major": 2, "version_minor": 0}
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": state}
    nbformat.write(notebook, book / "01_chapter.ipynb")
    nbformat.write(notebook, executed / "01_chapter.ipynb")
    [written] = slides.write_slides(executed, tmp_path / "out", book, tmp_path / "refs.bib", "s")
    html = written.read_text()
    assert '<script defer="" src="s/ipywidgets/embed.js">' in html
    assert html.index("mathjax.Hub = {Queue") < html.index("s/ipywidgets/embed.js")
