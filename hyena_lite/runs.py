"""What keeps a run safe on disk: its identity, a lock per output folder or file, atomic writes, and
checkpoints that are checked before they are kept, kept two deep, and read back with a fallback.

Every function here is independent of the training loop: `training` calls them at a few marked
places."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyena_lite.validation import Stdout

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"


class RunLocked(RuntimeError):
    """Another process holds the lock of an output folder or results file."""


class CorruptFile(RuntimeError):
    """A file hyena_lite wrote earlier cannot be read back (truncated, or not what it should be)."""


# ----------------------------------------------------------------------------------------- identity


def digest(value: Any) -> str:
    """A short sha256 of a JSON-able value (keys sorted): equal values, equal digests."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_digest(model: nn.Module) -> str:
    """A short sha256 of a model's parameters and buffers, names and bytes: which weights these
    are."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def tokens_digest(tokens: torch.Tensor) -> str:
    """A short sha256 of a token tensor (its values and shape): which data a run trains on."""
    t = tokens.detach().cpu().contiguous()
    return hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode() + t.numpy().tobytes()).hexdigest()[
        :16
    ]


def architecture(model: nn.Module) -> dict[str, Any]:
    """What a model is, without its weights: its class, its config (if it has one) and its
    parameters' shapes."""
    config = getattr(model, "config", None)
    settings = None
    if config is not None and hasattr(config, "to_dict"):
        settings = {
            k: v
            for k, v in config.to_dict().items()
            if k not in ("transformers_version", "_name_or_path", "name_or_path")
        }
    shapes = [[name, list(p.shape)] for name, p in model.named_parameters()]
    return {
        "class": type(model).__name__,
        "config": None if settings is None else digest(settings),
        "parameters": digest(shapes),
    }


# ------------------------------------------------------------------------------------------ locking


@contextmanager
def lock(path: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on `path` (a lock file) while the block runs; refuse at once when
    another process holds it. `what` names what is protected, for the message. The lock dies with
    its process (flock)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        if error.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        raise RunLocked(
            f"{what} is in use by another process (pid {holder}); wait for it to finish, "
            f"or choose another output"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield path
    finally:
        handle.close()


def folder_lock(folder: str | os.PathLike):
    """The lock of an output folder: one process at a time trains or writes in it."""
    return lock(Path(folder) / ".lock", f"the output folder {folder}")


def file_lock_path(path: str | os.PathLike) -> Path:
    """Where the lock of a results file lives: in the temporary folder (no lock files beside
    results)."""
    key = hashlib.sha256(str(Path(path).expanduser().resolve()).encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / "hyena_lite-locks" / f"{key}.lock"


def file_lock(path: str | os.PathLike):
    """The lock of a results file: one process at a time writes it."""
    return lock(file_lock_path(path), f"the results file {path}")


def set_aside(folder: str | os.PathLike, why: str) -> Path:
    """Rename a run folder that cannot be reused to FOLDER.unverified-TIME (nothing is deleted),
    saying so."""
    folder = Path(folder)
    aside = folder.with_name(f"{folder.name}.unverified-{time.strftime('%Y%m%dT%H%M%S')}")
    with folder_lock(folder):  # never from under a process training in it
        os.replace(folder, aside)
    print(f"warning: {folder} {why}: moved to {aside}; training again", file=sys.stderr)
    return aside


# ------------------------------------------------------------------------------------------ writing


def ensure_writable_dir(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and prove a file can be written in it; raise PermissionError naming
    it if not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise PermissionError(
            f"cannot write in the output folder {folder} ({error.strerror or error}); "
            f"choose a writable folder"
        ) from None
    return folder


def _replace_durably(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically: a reader sees the old file or the whole new one, never a
    part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    _replace_durably(tmp, path)
    return path


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Write a JSON results file atomically (indented, ending with a newline); `--json -`
    (validation.Stdout) keeps the value for the command line to print on stdout at the end."""
    if isinstance(path, Stdout):
        path.value = json.loads(json.dumps(value))  # a snapshot, as a file would hold
        return Path("<stdout>")
    return write_text(path, json.dumps(value, indent=1) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file hyena_lite wrote; a truncated or garbled one raises CorruptFile naming
    it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptFile(
            f"{path} is corrupt ({error}); delete it to start that run again"
        ) from None


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save atomically: a crash mid-write leaves the previous file in place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    _replace_durably(tmp, path)
    return path


def torch_load(path: str | os.PathLike, weights_only: bool = True) -> Any:
    """torch.load on the CPU; a truncated or garbled file raises CorruptFile naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise CorruptFile(
            f"{path} is corrupt ({str(error).splitlines()[0]}); delete it to start again"
        ) from None


# -------------------------------------------------------------------------------------- checkpoints


def nonfinite(tensors: Iterable[tuple[str, torch.Tensor | None]]) -> list[str]:
    """The names of the floating-point tensors that hold a NaN or an infinity.

    When none do it costs one device sync and a few fused kernels: the 2-norm of all the tensors
    together (foreach kernels, as gradient clipping computes it) is finite. Only when it is not are
    the tensors checked one by one (a finite tensor whose norm overflows is not named)."""
    named = [
        (name, t) for name, t in tensors if t is not None and t.is_floating_point() and t.numel()
    ]
    if not named or bool(torch.isfinite(_total_norm([t for _, t in named]))):
        return []
    return [name for name, t in named if not bool(torch.isfinite(t).all())]


def _total_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all the tensors together, on the first one's device, with foreach kernels
    (torch.nn.utils.get_total_norm, torch >= 2.6) where there are."""
    if hasattr(torch.nn.utils, "get_total_norm"):
        return torch.nn.utils.get_total_norm(tensors, error_if_nonfinite=False)
    device = tensors[0].device
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(t.float()).to(device) for t in tensors])
    )


def nonfinite_gradients(model: nn.Module) -> list[str]:
    """The names of the parameters whose gradient holds a NaN or an infinity."""
    return nonfinite((name, p.grad) for name, p in model.named_parameters())


def save_checkpoint(state: dict[str, Any], folder: str | os.PathLike) -> Path:
    """Write a checkpoint atomically, keeping the one before it as checkpoint.prev.pt; refuse
    non-finite weights."""
    bad = nonfinite(state["model"].items())
    if bad:
        raise FloatingPointError(
            f"refusing to save a checkpoint with non-finite weights ({', '.join(bad[:3])}) "
            f"in {folder}; the previous checkpoints are kept"
        )
    folder = Path(folder)
    current = folder / CHECKPOINT
    tmp = folder / f".{CHECKPOINT}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    if current.exists():
        os.replace(current, folder / PREVIOUS_CHECKPOINT)
    os.replace(tmp, current)
    return current


def load_checkpoint(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The newest readable checkpoint with finite weights in `folder`, or None; says so when it
    falls back."""
    folder = Path(folder)
    problems = []
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = folder / name
        if not path.exists():
            continue
        try:
            state = torch_load(path, weights_only=False)
        except CorruptFile as error:
            problems.append(str(error).split(";")[0])
            continue
        bad = nonfinite(state["model"].items())
        if bad:
            problems.append(f"{path} holds non-finite weights ({', '.join(bad[:3])})")
            continue
        if problems:
            print(
                f"warning: {'; '.join(problems)}: resuming from {path} (step {state['step']})",
                file=sys.stderr,
            )
        return state
    if problems:
        raise CorruptFile(
            f"no usable checkpoint in {folder}: {'; '.join(problems)}; delete the folder to start "
            "again"
        )
    return None


def remove_checkpoints(folder: str | os.PathLike) -> None:
    """Delete a finished run's checkpoints (its final model is kept elsewhere)."""
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        (Path(folder) / name).unlink(missing_ok=True)


class CheckpointClock:
    """Says when a periodic checkpoint is due: every `every_steps` steps and every `every_seconds`
    of training."""

    def __init__(self, every_steps: int = 0, every_seconds: float = 0.0):
        self.every_steps, self.every_seconds = every_steps, every_seconds
        self.last = time.monotonic()

    def due(self, step: int) -> bool:
        by_steps = bool(self.every_steps) and step % self.every_steps == 0
        by_time = bool(self.every_seconds) and time.monotonic() - self.last >= self.every_seconds
        return by_steps or by_time

    def saved(self) -> None:
        self.last = time.monotonic()
