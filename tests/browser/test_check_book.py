"""The browser check finds each kind of defect on a small synthetic site, and passes a clean
page."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import check_book  # noqa: E402

if importlib.util.find_spec("playwright") is None or not check_book.CHROMIUM.exists():
    pytest.skip(
        f"needs playwright and Debian's chromium at {check_book.CHROMIUM} (`make assets`)",
        allow_module_level=True,
    )

PAGE = "<!DOCTYPE html><html><head><title>t</title>{head}</head><body>{body}</body></html>"
SITE = {
    "good.html": '<h1 id="top">Good</h1><a href="other.html#sec">other</a><a href="#top">top</a>'
    '<img src="pixel.png" alt="one red pixel"><a href="https://example.org/">away</a>',
    "other.html": '<h2 id="sec">Section</h2><a href="good.html">back</a>',
    "bad_link.html": '<a href="missing.html">gone</a><a href="other.html#nope">bad anchor</a>',
    "bad_image.html": '<img src="missing.png" alt="nothing">',
    "traceback.html": '<div class="cell_output"><pre>Traceback (most recent call last):\n'
    '  File "x", line 1\nValueError: boom</pre></div>',
    "js_error.html": "<script>null.boom();</script><p>text</p>",
    "widget.html": '<script type="application/vnd.jupyter.widget-view+json">'
    '{"model_id": "abc", "version_major": 2, "version_minor": 0}</script>',
    "chapter.html": "<h1>A chapter from a notebook, without its Colab link</h1>",
    "markdown_notebook.html": '<a href="https://colab.research.google.com/github/o/r/blob/main/page.md">Colab</a>',
    "no_alt.html": '<img src="pixel.png" alt="pixel.png">',
    "raw_math.html": '<p><span class="math notranslate nohighlight">\\(x^2\\)</span></p>',
    "_static/ignored.html": '<a href="nowhere.html">not a page of the book</a>',
    "slides/dead.slides.html": '<div class="reveal"><div class="slides"><section>one</section>'
    '</div></div><a href="#/1">next slide, a reveal.js route</a>',
}
EXPECTED = {
    "bad_link.html": ["broken link", "broken anchor"],
    "bad_image.html": ["missing image", "HTTP 404"],
    "traceback.html": ["traceback"],
    "js_error.html": ["JavaScript error"],
    "widget.html": ["widgets did not render"],
    "chapter.html": ["Open-in-Colab"],
    "markdown_notebook.html": ["Colab cannot open"],
    "raw_math.html": ["not typeset"],
    "slides/dead.slides.html": ["reveal.js did not start"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, check_book.PageResult]:
    from PIL import Image

    root = tmp_path_factory.mktemp("site")
    for name, body in SITE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        head = (
            '<script src="https://cdn.example.org/lib.js"></script>' if name == "good.html" else ""
        )
        (root / name).write_text(PAGE.format(head=head, body=body))
    Image.new("RGB", (1, 1), "red").save(root / "pixel.png")
    (root / "_sources").mkdir()
    (root / "_sources" / "chapter.ipynb").write_text("{}")
    shots = root.parent / "shots"
    found = {r.path: r for r in check_book.check_book(root, shots)}
    assert sorted(shots.glob("*.png")), "no screenshots were saved"
    return found


def test_images_without_alt_text_are_noted() -> None:
    assert check_book.has_alt_text(
        {"src": "http://h/_images/a.png", "alt": "attention costs L squared"}
    )
    assert not check_book.has_alt_text({"src": "http://h/_images/a.png", "alt": "../_images/a.png"})
    assert check_book.has_alt_text({"src": "http://h/_static/logo.png", "alt": ""})  # decorative
    assert not check_book.has_alt_text({"src": "http://h/_images/a.png", "alt": None})


def test_missing_alt_text_is_a_note_unless_required(results) -> None:
    assert results["no_alt.html"].problems == []
    assert any("without alt text" in note for note in results["no_alt.html"].notes)


def test_missing_alt_text_fails_when_required(tmp_path) -> None:
    report = {
        "images": [
            {"src": "http://h/_images/a.png", "ok": True, "alt": "../_images/a.png"},
            {"src": "data:image/png;base64,AAAA", "ok": True, "alt": None},
            {"src": "http://h/_images/b.png", "ok": True, "alt": "a labelled figure"},
        ],
        "links": [],
        "outputs": [],
        "errorOutputs": 0,
        "widgetViews": 0,
        "widgetsRendered": 0,
        "mathElements": 0,
        "mathRendered": 0,
    }
    for require_alt in (False, True):
        result = check_book.PageResult("page.html")
        check_book.judge(report, tmp_path, "http://h", tmp_path / "page.html", result, require_alt)
        flagged = result.problems if require_alt else result.notes
        assert [m for m in flagged if m.startswith("2 images without alt text")], flagged
        assert all(
            "without alt text" not in m for m in (result.notes if require_alt else result.problems)
        )


def test_every_page_but_static_files_is_opened(results) -> None:
    assert sorted(results) == sorted(name for name in SITE if not name.startswith("_"))


def test_clean_pages_pass_and_external_requests_are_only_noted(results) -> None:
    assert results["good.html"].problems == []
    assert results["other.html"].problems == []
    assert any("external requests blocked" in note for note in results["good.html"].notes)


@pytest.mark.parametrize("page", sorted(EXPECTED))
def test_each_defect_is_reported(results, page: str) -> None:
    problems = " | ".join(results[page].problems)
    for expected in EXPECTED[page]:
        assert expected in problems, f"{page}: expected {expected!r} among: {problems}"


def test_reveal_routes_are_not_anchors(results) -> None:
    assert not [p for p in results["slides/dead.slides.html"].problems if "anchor" in p]


def test_chapters_without_slides_are_named(tmp_path) -> None:
    (tmp_path / "_sources" / "book").mkdir(parents=True)
    (tmp_path / "slides").mkdir()
    for name in ("01_first", "02_second"):
        (tmp_path / "_sources" / "book" / f"{name}.ipynb").write_text("{}")
    (tmp_path / "_sources" / "book" / "intro.md").write_text("")
    (tmp_path / "slides" / "01_first.slides.html").write_text("")
    [missing] = check_book.chapters_without_slides(tmp_path)
    assert missing.path == "slides/02_second.slides.html" and "02_second" in missing.problems[0]
