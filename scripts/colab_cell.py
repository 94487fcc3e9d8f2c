"""The first code cell of every chapter, made from the one setting of the repository:
`repository.url` and `repository.branch` in _config.yml (which the book's Colab badges and launch
buttons read too).

    python scripts/colab_cell.py          # rewrite the cell in every book/*.ipynb from _config.yml
    python scripts/colab_cell.py --check  # exit 1, naming the chapters whose cell disagrees

The cell must carry the install address itself: it runs before hyena_lite exists on Colab.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MARK = "# Colab only:"
TEMPLATE = """\
# Colab only: install hyena_lite and build its offline assets (elsewhere nothing happens);
# use_drive=True keeps the book's files on Google Drive, so that a re-run resumes from them.
import importlib.util, subprocess, sys  # noqa: E401
if "google.colab" in sys.modules and importlib.util.find_spec("hyena_lite") is None:
    package = "hyena_lite[assets] @ git+{url}@{branch}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)
import hyena_lite.colab  # noqa: E402
hyena_lite.colab.setup(use_drive=False)"""


def repository(config: Path = ROOT / "_config.yml") -> tuple[str, str]:
    """(url, branch) of _config.yml's repository section."""
    section = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("repository") or {}
    url, branch = str(section.get("url", "")).rstrip("/"), str(section.get("branch", "main"))
    if not url.startswith("https://"):
        raise SystemExit(
            f"{config}: repository.url must be the https address of the repository, not {url!r}"
        )
    return url, branch


def cell_source(url: str, branch: str) -> str:
    """The Colab cell for a repository address and branch."""
    return TEMPLATE.format(url=url, branch=branch)


def colab_cell_index(cells: list[dict]) -> int:
    """Index of the Colab cell: the code cell just before the one tagged `parameters`."""
    at = next(
        (i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", [])), None
    )
    if (
        not at
        or cells[at - 1]["cell_type"] != "code"
        or not "".join(cells[at - 1]["source"]).startswith(MARK)
    ):
        raise ValueError(
            f"no Colab cell (a code cell starting {MARK!r}) just before the `parameters` cell"
        )
    return at - 1


def stale_chapters(
    book: Path = ROOT / "book", config: Path = ROOT / "_config.yml", fix: bool = False
) -> list[str]:
    """The chapters whose Colab cell differs from _config.yml's; with fix, rewrite those cells."""
    wanted, stale = cell_source(*repository(config)), []
    for path in sorted(book.glob("[0-9][0-9]_*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cell = notebook["cells"][colab_cell_index(notebook["cells"])]
        if "".join(cell["source"]) != wanted:
            stale.append(path.name)
            if fix:
                cell["source"] = wanted.splitlines(keepends=True)
                path.write_text(
                    json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
                )
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="only say which chapters disagree (exit 1 if any)"
    )
    args = parser.parse_args(argv)
    stale = stale_chapters(fix=not args.check)
    verb = "disagree with" if args.check else "rewritten from"
    print(
        f"{len(stale)} Colab cells {verb} _config.yml's repository"
        + (f": {', '.join(stale)}" if stale else "")
    )
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
