"""Where hyena_lite keeps what it builds: offline assets and cached artefacts."""
from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    """The root folder of everything generated: $HYENA_LITE_HOME, else the checkout, else ~/.cache/hyena_lite."""
    if env := os.environ.get("HYENA_LITE_HOME"):
        return Path(env).expanduser().resolve()
    if (_REPO_ROOT / "pyproject.toml").exists() and (_REPO_ROOT / "data").is_dir():
        return _REPO_ROOT
    return Path.home() / ".cache" / "hyena_lite"


def assets_dir() -> Path:
    """Built offline assets (tokenizer, corpus, teacher weights from packages)."""
    return home() / "data" / "build"


def artifacts_dir() -> Path:
    """Cached results of expensive steps (trained teachers, students, logs)."""
    return home() / "artifacts"


def results_dir() -> Path:
    """Small committed results of real runs (JSON, CSV) shown by the book."""
    return _REPO_ROOT / "results"
