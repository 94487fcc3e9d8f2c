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
error: these chapters raised while executing (their tracebacks):
./_build/html/reports/book/08_evaluation.err.log
\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03.5
"""


def test_chapter_times_and_the_wall_clock_are_read_from_the_log():
    assert book_times.chapter_times(LOG) == [
        {"chapter": "01_preface", "seconds": 10.2, "ok": True},
        {"chapter": "02_teacher", "seconds": 812.5, "ok": True},
        {"chapter": "08_evaluation", "seconds": None, "ok": False},
    ]
    assert book_times.wall_seconds(LOG) == 3723.5
    assert book_times.wall_seconds("no time here") is None


def test_the_first_run_is_a_run_book_record_and_the_cached_run_sits_beside_it(tmp_path):
    log, out = tmp_path / "book.log", tmp_path / "book.json"
    log.write_text(LOG)
    book_times.main([str(log), "--run", "cached", "--json", str(out)])
    book_times.main([str(log), "--run", "first", "--json", str(out), "--commit", "abc"])
    record = json.loads(out.read_text())
    assert {"command", "commit", "hardware", "profile", "chapters"} <= set(record)
    assert record["commit"] == "abc" and record["chapters_seconds"] == 822.7
    assert record["make_book_wall_seconds"] == 3723.5
    assert record["cached"]["chapters"][0] == {"chapter": "01_preface", "seconds": 10.2, "ok": True}


def test_a_log_without_chapters_is_refused(tmp_path):
    log = tmp_path / "empty.log"
    log.write_text("nothing ran\n")
    with pytest.raises(SystemExit, match="no 'Executed notebook in' lines"):
        book_times.main([str(log), "--run", "first", "--json", str(tmp_path / "x.json")])
