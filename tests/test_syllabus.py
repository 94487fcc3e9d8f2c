"""The instructors' syllabus (book/_ext/syllabus.py): every chapter in exactly one lecture, and each
time in the table read from the profile's results file, never typed in."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("syllabus", ROOT / "book" / "_ext" / "syllabus.py")
syllabus = importlib.util.module_from_spec(spec)
spec.loader.exec_module(syllabus)

CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
RESULTS = ROOT / "hyena_lite" / "results"


def instructors_lectures() -> list[tuple[str, str, list[str]]]:
    """The lectures of the syllabus directive in book/instructors.md."""
    text = (ROOT / "book" / "instructors.md").read_text(encoding="utf-8")
    body = re.search(r"```\{syllabus\}\n(.*?)```", text, re.S)
    assert body, "book/instructors.md has no syllabus directive"
    return syllabus.parse_lectures(body.group(1).splitlines())


def test_every_chapter_is_in_one_lecture() -> None:
    assigned = syllabus.assign_chapters(instructors_lectures(), CHAPTERS)
    assert sorted(c for found in assigned for c in found) == CHAPTERS


def test_a_chapter_left_out_or_named_twice_is_an_error() -> None:
    chapters = ["01_a", "02_b", "03_c"]
    with pytest.raises(ValueError, match=r"\['03_c'\] are not"):
        syllabus.assign_chapters([("1", "x", ["01", "02"])], chapters)
    with pytest.raises(ValueError, match="names 0 chapters"):
        syllabus.assign_chapters([("1", "x", ["04"])], chapters)
    with pytest.raises(ValueError, match=r"\['02_b'\] are not"):
        syllabus.assign_chapters([("1", "x", ["01", "02"]), ("2", "y", ["02", "03"])], chapters)
    with pytest.raises(ValueError, match="must read"):
        syllabus.parse_lectures(["1 | no chapters"])


def test_times_come_from_the_records(tmp_path) -> None:
    record = {
        "profile": "smoke",
        "commit": "abc1234",
        "hardware": "2 cores",
        "chapters": [
            {"chapter": "01_a", "seconds": 5.8, "ok": True},
            {"chapter": "02_b", "seconds": 125.4, "ok": True, "t4_estimate_minutes": 20.9},
            {"chapter": "03_c", "seconds": 12.0, "ok": False},
        ],
    }
    (tmp_path / "run.json").write_text(json.dumps(record))
    loaded = syllabus.load_times(tmp_path / "run.json")
    assert syllabus.time_cell(loaded, "01_a") == "6 s"
    assert syllabus.time_cell(loaded, "02_b") == "2 min 05 s (T4 ~21 min)"
    assert syllabus.time_cell(loaded, "03_c") == "failed after 12 s"
    assert syllabus.time_cell(loaded, "04_d") == "not measured"
    assert syllabus.load_times(tmp_path / "absent.json") is None
    assert syllabus.time_cell(None, "01_a") == "being measured"
    lectures = [("1", "Intro", ["01", "02"]), ("2", "More", ["03"])]
    records = {"smoke": loaded, "cpu": None}
    rows = syllabus.syllabus_rows(lectures, [["01_a", "02_b"], ["03_c"]], records, "book")
    assert rows[2] == (
        '| 1 | Intro | {doc}`/book/01_a` | <a href="../slides/01_a.slides.html">slides</a> '
        "| 6 s | being measured |"
    )
    assert rows[3].startswith("|  |  | {doc}`/book/02_b`")


@pytest.mark.parametrize("name", list(syllabus.PROFILES.values()))
def test_committed_records_name_every_chapter_they_time(name: str) -> None:
    """A committed record is a run_book.py record whose chapters are this book's chapters (a
    chapter renamed since is reported rather than silently dropped from the syllabus)."""
    record = syllabus.load_times(RESULTS / name)
    if record is None:
        pytest.skip(f"{name} is not committed yet (the syllabus says it is being measured)")
    assert {"command", "commit", "hardware", "profile"} <= set(record)
    stale = sorted(set(record["by_chapter"]) - set(CHAPTERS))
    assert stale == [], f"{name} times chapters this book no longer has: {stale}"


def test_sources_name_each_file_and_say_which_is_missing() -> None:
    record = {
        "profile": "smoke",
        "commit": "0123456789abcdef",
        "hardware": "2 cores",
        "notes": "busy",
    }
    lines = syllabus.sources({"smoke": record, "gpu (H200; T4 estimate)": None, "cpu": None})
    assert lines[0] == (
        "- smoke: `hyena_lite/results/book_smoke.json`, profile smoke, commit 0123456789, "
        "on 2 cores. Its notes: busy"
    )
    assert "being re-measured" in lines[2] and "book_cpu.json" in lines[2]
