"""Where hyena_lite keeps what it builds (offline assets, cached artefacts) and what it ships
(results files).

The results of real runs (JSON, CSV) and the assets' checksums are package data inside `hyena_lite`,
read through importlib.resources, so that a wheel installed outside any checkout (Colab) finds them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

_REPO_ROOT = Path(__file__).resolve().parent.parent
_PACKAGE = "hyena_lite"
_RESULTS = "results"
_extracted = contextlib.ExitStack()  # files copied out of a zipped install, removed at exit
_copies: dict[str, Path] = {}
atexit.register(_extracted.close)


def home() -> Path:
    """The root folder of everything generated: $HYENA_LITE_HOME, else the checkout,
    else ~/.cache/hyena_lite."""
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


def package_file(name: str) -> Path:
    """A file or folder shipped inside the hyena_lite package, as a real path (extracted from a
    zip, once)."""
    resource = resources.files(_PACKAGE).joinpath(name)
    if isinstance(resource, Path):
        return resource
    if name not in _copies:
        if resource.is_dir():  # as_file takes folders only from Python 3.12: copy the files out
            folder = (
                Path(_extracted.enter_context(tempfile.TemporaryDirectory(prefix="hyena_lite-")))
                / name
            )
            folder.mkdir(parents=True)
            for item in resource.iterdir():
                if item.is_file():
                    (folder / item.name).write_bytes(item.read_bytes())
            _copies[name] = folder
        else:
            _copies[name] = _extracted.enter_context(resources.as_file(resource))
    return _copies[name]


def results_dir() -> Path:
    """The small results of real runs (JSON, CSV) that the book shows: hyena_lite/results in
    the package.

    In a checkout it is the source folder, where scripts write new results; installed, the
    installed copy.
    """
    return package_file(_RESULTS)


def load_result(name: str) -> Any:
    """A shipped results file by name: a .json file as its object, a .csv file as a
    pandas DataFrame."""
    resource = resources.files(_PACKAGE).joinpath(_RESULTS).joinpath(name)
    if not resource.is_file():
        shipped = sorted(
            r.name
            for r in resources.files(_PACKAGE).joinpath(_RESULTS).iterdir()
            if r.name.endswith((".json", ".csv"))
        )
        raise FileNotFoundError(
            f"no results file {name!r} in hyena_lite/{_RESULTS}; it ships {', '.join(shipped)}"
        )
    if name.endswith(".json"):
        return json.loads(resource.read_text(encoding="utf-8"))
    if name.endswith(".csv"):
        import pandas as pd

        with resource.open("r", encoding="utf-8") as handle:
            return pd.read_csv(handle)
    raise ValueError(
        f"results file {name!r}: load_result reads .json and .csv files; open "
        f"results_dir() / {name!r} yourself for anything else"
    )
