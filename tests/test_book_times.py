"""scripts/book_times.py reads chapter times and the wall time from a `make book` log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import book_times  # noqa: E402

LOG = """\
/tmp/x/book/01_preface.ipynb: Executing notebook using local CWD [mystnb]
/tmp/x/book/01_preface.ipynb: Executed notebook in 10.17 seconds [mystnb]
/tmp/x/book/02_teacher.ipynb: Executed notebook in 812.5 seconds [mystnb]
\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03.5
"""


def test_chapter_times_and_the_wall_clock_are_read_from_the_log():
    assert book_times.chapter_times(LOG) == [
        {"chapter": "01_preface", "seconds": 10.2},
        {"chapter": "02_teacher", "seconds": 812.5},
    ]
    assert book_times.wall_seconds(LOG) == 3723.5
    assert book_times.wall_seconds("no time here") is None


def test_each_run_keeps_the_other_in_the_results_file(tmp_path):
    log, out = tmp_path / "book.log", tmp_path / "book.json"
    log.write_text(LOG)
    book_times.main([str(log), "--run", "first", "--json", str(out), "--commit", "abc"])
    book_times.main([str(log), "--run", "cached", "--json", str(out)])
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {"first", "cached"} and runs["first"]["commit"] == "abc"
    assert runs["first"]["chapters_seconds"] == 822.7 and not runs["first"]["failed"]


def test_a_log_without_chapters_is_refused(tmp_path):
    log = tmp_path / "empty.log"
    log.write_text("nothing ran\n")
    with pytest.raises(SystemExit, match="no 'Executed notebook in' lines"):
        book_times.main([str(log), "--run", "first", "--json", str(tmp_path / "x.json")])
