"""Shared test helpers: load a script of scripts/ as a module; on a machine without CUDA, Triton's
interpreter for the Triton decoding step's tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

if importlib.util.find_spec("triton") is not None and not torch.cuda.is_available():
    # Set before anything imports triton (importing hyena_lite does, through torch._dynamo):
    # triton reads it once, and the kernels of hyena_lite.modal_kernel then run in its interpreter.
    os.environ.setdefault("TRITON_INTERPRET", "1")

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture
def load_script():
    """A function that imports scripts/NAME.py as a module (scripts are not a package)."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def run_smoke():
    """A function that runs scripts/NAME.py with its arguments from the repository's root, with
    Triton's interpreter, and returns the finished process (asserting it exited 0)."""

    def run(name: str, *arguments: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(SCRIPTS.parent), "TRITON_INTERPRET": "1"}
        done = subprocess.run(
            [sys.executable, str(SCRIPTS / f"{name}.py"), *arguments],
            cwd=SCRIPTS.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    return run
