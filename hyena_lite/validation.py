"""Checks of command-line values, as argparse `type=` functions: a bad value stops the command
before any work, with one line that names the value and how to fix it.

Output paths come back as `OutputFile` or `OutputDir`: the command line locks each one for the
command's duration (hyena_lite.runs), so that two processes never write the same results or
folder."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


class OutputFile(str):
    """A results file the command will write: checked writable, and locked while the command
    runs."""


class Stdout(str):
    """`--json -`: the results go to standard output, alone (the command's other lines go to
    stderr); `value` holds the last results written, printed when the command ends."""

    value: object = None


class OutputDir(str):
    """An output folder the command will write: checked writable, and locked while the command
    runs."""


def int_at_least(low: int, what: str = "") -> Callable[[str], int]:
    """An argparse type: an integer >= low."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an integer; give a whole number >= {low}"
            ) from None
        if value < low:
            raise argparse.ArgumentTypeError(
                f"{value} is too small; give {what or 'a number'} >= {low}"
            )
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def float_at_least(low: float, strict: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite float >= low (> low when strict)."""
    relation = ">" if strict else ">="

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a number; give a number {relation} {low}"
            ) from None
        if (
            value != value
            or value in (float("inf"), float("-inf"))
            or value < low
            or (strict and value == low)
        ):
            raise argparse.ArgumentTypeError(
                f"{text} is out of range; give a finite number {relation} {low}"
            )
        return value

    parse.__name__ = f"number {relation} {low}"
    return parse


def share(text: str) -> float:
    """An argparse type: a share of a whole, a number in [0, 1)."""
    value = float_at_least(0.0)(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is out of range; give a share in [0, 1)")
    return value


def int_list(low: int = 1) -> Callable[[str], str]:
    """An argparse type: comma-separated integers, each >= low, at least one (the text is kept as
    given)."""
    item = int_at_least(low)

    def parse(text: str) -> str:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(
                f"{text!r} holds no numbers; give comma-separated integers >= {low}"
            )
        try:
            [item(p) for p in parts]
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(f"in {text!r}: {error}") from None
        return text

    parse.__name__ = "comma-separated integers"
    return parse


def names_from(allowed: tuple[str, ...] | list[str]) -> Callable[[str], str]:
    """An argparse type: comma-separated names, each one of `allowed` (the text is kept as
    given)."""

    def parse(text: str) -> str:
        names = [p.strip() for p in text.split(",") if p.strip()]
        unknown = [n for n in names if n not in allowed]
        if not names or unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, unknown)) or 'empty list'} in {text!r}; "
                f"choose from {','.join(allowed)}"
            )
        return text

    parse.__name__ = "comma-separated names"
    return parse


def device(text: str) -> str:
    """An argparse type: a torch device that exists here (cpu, or cuda when a GPU is visible)."""
    import torch

    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; give cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: no CUDA GPU is visible here; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: only cpu and cuda are supported")
    return text


def existing_file(text: str) -> Path:
    """An argparse type: a path to a readable regular file."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file; check the path")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a regular file (a folder?); give a file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text} is not readable; fix its permissions")
    return path


def model_folder(text: str) -> Path:
    """An argparse type: a folder written by save_pretrained (it holds a config.json)."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text}: no such folder; give a model folder saved with save_pretrained"
        )
    if not (path / "config.json").is_file():
        raise argparse.ArgumentTypeError(
            f"{text} holds no config.json; give a model folder saved with save_pretrained"
        )
    return path


def looks_like_path(text: str) -> bool:
    """Whether a model reference is meant as a local path rather than a name or a hub id
    ('org/name')."""
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or Path(text).exists():
        return True
    head = text.split("/", 1)[0]
    return (
        "/" in text and Path(head).is_dir()
    )  # 'models/studnet' beside an existing 'models' folder


def model_reference(text: str) -> str:
    """An argparse type: [LABEL=]FOLDER_OR_NAME; a path that is meant as a folder must be a model
    folder."""
    where = text.rpartition("=")[2]
    if not where:
        raise argparse.ArgumentTypeError(f"{text!r} names no model; give [LABEL=]FOLDER_OR_NAME")
    if looks_like_path(where):
        model_folder(where)
    return text


def _writable_ancestor(path: Path, text: str) -> None:
    """Raise unless the nearest existing folder above `path` is a writable folder."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot write {text}: {parent} is a file, not a folder; choose another path"
        )
    try:  # a real file, not os.access: root, read-only mounts and ACLs answer differently
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as error:
        raise argparse.ArgumentTypeError(
            f"cannot write {text}: the folder {parent} is not writable "
            f"({error.strerror or error}); choose another path"
        ) from None


def output_file(text: str) -> OutputFile | Stdout:
    """An argparse type: a file to write (its folder is created if needed; an existing folder is
    refused), or `-` for standard output."""
    if text == "-":
        return Stdout(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty output path; give a file name")
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the path of a file to write")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(
            f"cannot write {text}: the file is read-only; choose another path"
        )
    _writable_ancestor(path, text)
    return OutputFile(path)


def output_dir(text: str) -> OutputDir:
    """An argparse type: a folder to write in (created if needed; an existing file is refused)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty output folder; give a folder name")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is a file, not a folder; choose a folder for the output"
        )
    _writable_ancestor(path / "file", text)
    return OutputDir(path)


def one_of(allowed: tuple[str, ...] | list[str], what: str) -> Callable[[str], str]:
    """An argparse type: one of `allowed` (`what` names the kind of value in the message)."""

    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {text!r}; choose one of {', '.join(allowed)}"
            )
        return text

    parse.__name__ = what
    return parse


def apply_checks(
    parser: argparse.ArgumentParser, checks: dict[str, Callable[[str], object]]
) -> None:
    """Give each option of `parser` named in `checks` ("--tokens": positive_int, ...) that check as
    its type."""
    actions = {option: action for action in parser._actions for option in action.option_strings}
    missing = sorted(set(checks) - set(actions))
    if missing:
        raise KeyError(
            f"{parser.prog} has no options {missing}: update the checks of hyena_lite.cli"
        )
    for option, check in checks.items():
        actions[option].type = check
