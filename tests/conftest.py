"""Shared test helpers: load a script of scripts/ as a module; on a machine without CUDA, Triton's
interpreter for the Triton decoding step's tests."""

from __future__ import annotations

import importlib.util
import os
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
