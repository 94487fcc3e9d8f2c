"""Where a result came from: one record, the same keys in every results file.

`provenance(command)` gives `command`, `commit`, `hardware`, `created` and `versions`; every
command that writes a results file puts it at the top of the file (chapter 1 lists the files).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

KEYS = ("command", "commit", "hardware", "created", "versions")


def git_commit() -> str | None:
    """The checkout's commit: $HYENA_LITE_GIT_COMMIT where the tree travelled without its .git,
    else the HEAD of the git checkout, with "-dirty" appended when tracked files differ from it
    (a tree copied over an older .git, as on the team's GPU device, must not pass for that
    commit), else None (an installed wheel has no commit)."""
    if env := os.environ.get("HYENA_LITE_GIT_COMMIT"):
        return env
    here = Path(__file__).resolve().parent
    head = _git(["rev-parse", "HEAD"], here)
    if head is None or not head.stdout.strip():
        return None
    changed = _git(["status", "--porcelain", "--untracked-files=no"], here)
    dirty = changed is not None and bool(changed.stdout.strip())
    return head.stdout.strip() + ("-dirty" if dirty else "")


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess | None:
    """`git ARGS` run in cwd, or None where git cannot run."""
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


def hardware() -> str:
    """One line naming the machine: the GPUs when CUDA is present, else the CPU and its cores."""
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        name = torch.cuda.get_device_name()
        return name if count == 1 else f"{count} x {name}"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"


def versions() -> dict[str, str | None]:
    """The versions of Python, PyTorch (and its CUDA), transformers and hyena_lite."""
    import transformers

    import hyena_lite

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "hyena_lite": hyena_lite.__version__,
    }


def command_line(words: list[str], options: dict[str, Any], repeat_flags: bool = False) -> str:
    """The shell command `words` followed by `options` spelled out as flags (`a_b=1` gives
    `--a-b 1`; True gives the bare flag, False and None nothing; a list gives one flag and its
    items, or with `repeat_flags` the flag before each item, as argparse's "append" reads)."""
    out = list(words)
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out += [flag] if value else []
        elif isinstance(value, (list, tuple)):
            pairs = [[flag, str(item)] for item in value]
            out += [w for pair in pairs for w in pair] if repeat_flags else [flag, *map(str, value)]
        elif value is not None:
            out += [flag, str(value)]
    return shlex.join(out)


def provenance(command: str) -> dict[str, Any]:
    """The record every results file starts with: the command that wrote it, the git commit
    (None outside a checkout), the hardware, the time (UTC) and the versions."""
    return {
        "command": command,
        "commit": git_commit(),
        "hardware": hardware(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
