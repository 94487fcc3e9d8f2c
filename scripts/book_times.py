"""Per-chapter execution times of a `make book` run, read from its log, into a results file.

    /usr/bin/time -v make book > book.log 2>&1     # on a fresh clone: the first run
    python scripts/book_times.py book.log --run first --json hyena_lite/results/book_cpu.json
    make book > book2.log 2>&1                      # again: teacher and students are cached
    python scripts/book_times.py book2.log --run cached --json hyena_lite/results/book_cpu.json

jupyter-book (myst-nb) logs "<path>.ipynb: Executed notebook in S seconds" for each chapter, and
scripts/build_book.sh names the report of each chapter that raised; GNU time's "Elapsed (wall
clock) time" line, when present, gives the whole command's time (set-up, assets, execution, the
site and its slides). The first run is the file's top level, in the record format of
scripts/run_book.py (command, commit, hardware, profile, chapters: chapter, seconds, ok), which
the book's syllabus reads; the cached run sits under "cached". Each --run replaces its own part.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from hyena_lite.provenance import provenance

EXECUTED = re.compile(r"([\w./-]+\.ipynb): Executed notebook in ([\d.]+) seconds")
FAILED = re.compile(r"reports/book/([\w.-]+\.err\.log)")
ELAPSED = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)")


def chapter_times(log: str) -> list[dict[str, Any]]:
    """[{chapter, seconds, ok}] in the order the chapters ran (the last time wins for a chapter run
    twice); ok is False, and seconds None when it logged none, for a chapter whose error report the
    log names."""
    times: dict[str, float] = {}
    for path, seconds in EXECUTED.findall(log):
        times[Path(path).stem] = float(seconds)
    failed = {Path(name).name.removesuffix(".err.log") for name in FAILED.findall(log)}
    timed = [
        {"chapter": name, "seconds": round(s, 1), "ok": name not in failed}
        for name, s in times.items()
    ]
    return timed + [  # a chapter that raised logs no time
        {"chapter": name, "seconds": None, "ok": False} for name in sorted(failed - set(times))
    ]


def wall_seconds(log: str) -> float | None:
    """The whole command's wall time from GNU time's report, or None without one."""
    found = ELAPSED.findall(log)
    if not found:
        return None
    seconds = 0.0
    for part in found[-1].split(":"):
        seconds = seconds * 60 + float(part)
    return round(seconds, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="the output of `make book`")
    parser.add_argument("--run", choices=("first", "cached"), required=True)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--commit", default=None, help="the commit the book ran at (default: HEAD)")
    parser.add_argument("--note", default="", help="what else ran on the machine, and so on")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    log = args.log.read_text(errors="replace")
    chapters = chapter_times(log)
    if not chapters:
        sys.exit(f"no 'Executed notebook in' lines in {args.log}: is it a `make book` log?")
    record = json.loads(args.json.read_text()) if args.json.exists() else {}
    chapters_total = round(sum(c["seconds"] or 0.0 for c in chapters), 1)
    run = {
        **provenance(f"make book  # then: python scripts/book_times.py LOG --run {args.run}"),
        **({"commit": args.commit} if args.commit else {}),
        "profile": args.profile,
        "chapters": chapters,
        "chapters_seconds": chapters_total,
        "make_book_wall_seconds": wall_seconds(log),
        "notes": args.note,
    }
    if args.run == "first":
        record = {**run, **({"cached": record["cached"]} if "cached" in record else {})}
    else:
        record["cached"] = run
    wall = run["make_book_wall_seconds"]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{len(chapters)} chapters, {chapters_total / 60:.1f} min executing; make book {wall} s")


if __name__ == "__main__":
    main()
