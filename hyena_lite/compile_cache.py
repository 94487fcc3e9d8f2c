"""torch.compile's artefacts (its Mega-Cache: generated kernels, AOTAutograd graphs) kept in one
compressed file, so that a run on a fresh machine, or resumed on another one, loads what an earlier
run compiled instead of compiling it again. The GPU machines of a session start bare, and compiling
a SmolLM2 student's KD and induction steps takes minutes of their time. Artefacts only match the
same torch, Triton, GPU architecture and code; those that do not are compiled as usual."""

from __future__ import annotations

import gzip
from pathlib import Path

import torch


def save_compiled(path: str | Path) -> int | None:
    """Write the artefacts compiled (or loaded) in this process to `path` (gzip); returns the bytes
    written, or None when there is nothing to save."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return None
    data = gzip.compress(saved[0], compresslevel=6)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def load_compiled(path: str | Path) -> dict[str, int] | None:
    """Hot-load the artefacts of `save_compiled` from `path`; returns how many of each kind were
    loaded, or None when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as error:
        raise ValueError(
            f"{path} is not a file written by save_compiled ({error}): delete it or give another"
        ) from error
    info = torch.compiler.load_cache_artifacts(data)
    return {} if info is None else {kind: len(keys) for kind, keys in info.artifacts.items()}
