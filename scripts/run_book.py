"""Execute chapters of the book with nbclient in a working folder, in one profile, and record each
one's time, peak GPU memory and outcome in a JSON file; it goes on after a failing chapter and, run
again, skips the chapters already `ok` in that file.

    python scripts/run_book.py --workdir /tmp/book-run --profile gpu --json book_gpu_h200.json \
        [--chapters 06 07]

Each chapter runs in a kernel of the Python that runs this script, from a copy in --workdir (so that
the checkout is neither its folder nor on its path); the executed copy is kept there. Its peak GPU
memory is torch.cuda.max_memory_reserved(), read by a cell appended to the copy; null without CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from hyena_lite.provenance import provenance

BOOK = Path(__file__).resolve().parent.parent / "book"
KERNEL = "hyena-lite-run"
PEAK_MARK = "RUN_BOOK_PEAK_GPU_GIB"
PEAK_CELL = (
    "import json as _json, torch as _torch\n"
    f"print({PEAK_MARK!r} + ' ' + _json.dumps(_torch.cuda.max_memory_reserved() / 2**30 "
    "if _torch.cuda.is_available() else None), flush=True)"
)


def chapters(book: Path, chosen: list[str] | None) -> list[Path]:
    """The book's chapter notebooks, all or those whose file name starts with one of `chosen`
    ("06", "07_dist")."""
    every = sorted(book.glob("[0-9][0-9]_*.ipynb"))
    if not every:
        raise SystemExit(f"no chapters (NN_*.ipynb) in {book}")
    if not chosen:
        return every
    picked = [p for p in every if any(p.name.startswith(c) for c in chosen)]
    unknown = [c for c in chosen if not any(p.name.startswith(c) for p in every)]
    if unknown:
        raise SystemExit(
            f"no chapter starts with {unknown}; the chapters are {', '.join(p.stem for p in every)}"
        )
    return picked


def use_this_python_as_kernel(workdir: Path) -> None:
    """A kernel spec named KERNEL that starts this interpreter, found first through JUPYTER_PATH."""
    folder = workdir / ".jupyter" / "kernels" / KERNEL
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": f"hyena_lite run ({sys.executable})",
                "language": "python",
            }
        )
    )
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        filter(None, [str(workdir / ".jupyter"), os.environ.get("JUPYTER_PATH")])
    )


def run_chapter(path: Path, workdir: Path, timeout: int) -> dict:
    """Execute one chapter in workdir; its record: chapter, seconds, peak_gpu_gib, ok (and error
    when not ok)."""
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(workdir)}},
    )
    record: dict = {"chapter": path.stem, "seconds": None, "peak_gpu_gib": None, "ok": False}
    start = time.perf_counter()
    client.reset_execution_trackers()
    try:
        with client.setup_kernel():
            try:
                for index, cell in enumerate(notebook.cells[:-1]):
                    client.execute_cell(cell, index)
                record["ok"] = True
            except (CellExecutionError, CellTimeoutError) as error:
                cell_id = notebook.cells[index].get("id", "")
                record["error"] = f"cell {index} ({cell_id}): {_last_line(str(error))}"
            record["seconds"] = round(time.perf_counter() - start, 1)
            peak = client.execute_cell(notebook.cells[-1], len(notebook.cells) - 1)
            record["peak_gpu_gib"] = _peak(peak)
    except DeadKernelError as error:
        record["seconds"] = round(time.perf_counter() - start, 1)
        record["ok"], record["error"] = False, f"the kernel died: {_last_line(str(error))}"
    nbformat.write(notebook, workdir / path.name)
    return record


def _last_line(text: str) -> str:
    lines = [
        line for line in re.sub(r"\x1b\[[0-9;]*m", "", text).strip().splitlines() if line.strip()
    ]
    return lines[-1].strip()[:500] if lines else "unknown error"


def _peak(cell) -> float | None:
    """The peak the last cell printed; its stream may arrive in several outputs (the kernel
    flushes stdout on a timer), so they are joined before the line is read."""
    text = "".join(output.get("text", "") for output in cell.get("outputs", []))
    for line in text.splitlines():
        if line.startswith(PEAK_MARK + " "):
            value = json.loads(line.split(" ", 1)[1])
            return None if value is None else round(value, 2)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="folder to run in (outside the checkout)")
    parser.add_argument(
        "--profile", required=True, help="smoke, cpu, gpu or gpu-offline (HYENA_BOOK_PROFILE)"
    )
    parser.add_argument("--json", required=True, help="the record to write (and to resume from)")
    parser.add_argument(
        "--chapters", nargs="*", default=None, help="chapter prefixes, e.g. 01 06 (default: all)"
    )
    parser.add_argument(
        "--book", default=str(BOOK), help="folder of the chapters (default: this checkout's book/)"
    )
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument(
        "--commit",
        default=None,
        help="the commit to record (default: the installed hyena_lite's checkout, if any)",
    )
    args = parser.parse_args(argv)

    book, workdir, out = (
        Path(args.book).resolve(),
        Path(args.workdir).resolve(),
        Path(args.json).resolve(),
    )
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["HYENA_BOOK_PROFILE"] = args.profile
    use_this_python_as_kernel(workdir)
    record = json.loads(out.read_text()) if out.is_file() else {}
    done = {c["chapter"]: c for c in record.get("chapters", [])}
    command = " ".join(["python", *sys.argv]) if argv is None else f"run_book.main({argv})"
    record.update(provenance(command))  # command, commit, hardware, created, versions
    record.update(
        {
            "commit": args.commit or record["commit"],
            "profile": args.profile,
            "workdir": str(workdir),
            "python": sys.executable,
        }
    )
    for path in chapters(book, args.chapters):
        if done.get(path.stem, {}).get("ok"):
            print(f"{path.stem}: ok in {out.name} already, skipped", flush=True)
            continue
        print(f"{path.stem}: running in the {args.profile} profile", flush=True)
        done[path.stem] = run_chapter(path, workdir, args.timeout)
        result = done[path.stem]
        print(
            f"{path.stem}: {'ok' if result['ok'] else 'FAILED'} in {result['seconds']} s, peak GPU "
            f"{result['peak_gpu_gib']} GiB" + ("" if result["ok"] else f": {result['error']}"),
            flush=True,
        )
        record["chapters"] = sorted(done.values(), key=lambda c: c["chapter"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1) + "\n")
    failed = [c["chapter"] for c in record.get("chapters", []) if not c["ok"]]
    print(
        f"{len(record.get('chapters', [])) - len(failed)} chapters ok, {len(failed)} failed"
        + (f": {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
