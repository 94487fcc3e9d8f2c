"""scripts/run_book.py: every chapter runs in a kernel from a working folder, a failure does not
stop the run, and a second run skips the chapters already ok."""

from __future__ import annotations

import json

import nbformat


def write_chapter(folder, name: str, code: str) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbformat.write(notebook, folder / f"{name}.ipynb")


def test_runs_on_after_a_failure_records_it_and_resumes(load_script, tmp_path, capsys, monkeypatch):
    run_book = load_script("run_book")
    for variable in (
        "HYENA_BOOK_PROFILE",
        "JUPYTER_PATH",
    ):  # main() sets them for its kernels: restore them after
        monkeypatch.setenv(variable, "")
    book, work, out = tmp_path / "book", tmp_path / "work", tmp_path / "run.json"
    book.mkdir()
    write_chapter(book, "01_first", "import os\nprint(os.getcwd())")
    write_chapter(book, "02_broken", "raise ValueError('boom')")
    write_chapter(book, "03_third", "import os\nassert os.environ['HYENA_BOOK_PROFILE'] == 'smoke'")
    args = [
        "--book",
        str(book),
        "--workdir",
        str(work),
        "--profile",
        "smoke",
        "--json",
        str(out),
        "--timeout",
        "60",
    ]
    assert run_book.main(args) == 1
    record = json.loads(out.read_text())
    by_name = {c["chapter"]: c for c in record["chapters"]}
    assert [by_name[n]["ok"] for n in ("01_first", "02_broken", "03_third")] == [True, False, True]
    assert by_name["02_broken"]["error"].endswith("ValueError: boom")
    assert all(
        c["peak_gpu_gib"] is None and c["seconds"] > 0 for c in record["chapters"]
    )  # no CUDA here
    assert {"command", "commit", "hardware"} <= set(record)
    assert (
        str(work)
        in nbformat.read(work / "01_first.ipynb", as_version=4).cells[0].outputs[0]["text"]
    )

    write_chapter(book, "01_first", "raise RuntimeError('must be skipped')")
    write_chapter(book, "02_broken", "print('fixed')")
    capsys.readouterr()
    assert run_book.main(args) == 0
    assert "01_first: ok in run.json already, skipped" in capsys.readouterr().out
    assert all(c["ok"] for c in json.loads(out.read_text())["chapters"])


def test_the_peak_line_is_read_when_the_kernel_split_it_over_two_outputs(load_script):
    """ipykernel flushes stdout on a timer, so one print may arrive as two stream outputs (seen in
    CI: a chapter's record crashed on the mark alone)."""
    run_book = load_script("run_book")
    mark = run_book.PEAK_MARK
    split = {"outputs": [{"text": "training done\n" + mark}, {"text": " 1.234\n"}]}
    assert run_book._peak(split) == 1.23
    assert run_book._peak({"outputs": [{"text": f"{mark} null\n"}]}) is None
    assert run_book._peak({"outputs": [{"text": mark}]}) is None
