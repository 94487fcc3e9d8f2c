"""scripts/monarch_resources.py: the matrix-product convolution kernel compiled for Hopper on a
machine without a GPU, and its registers, spills, shared memory and programs an SM read back."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "monarch_resources.py"


def test_the_kernels_compile_for_hopper_and_report_their_resources() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compile for real
    env["PYTHONPATH"] = str(SCRIPT.parent.parent)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--fft", "2048", "8192", "--warps", "8"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if "ships no cuobjdump" in done.stderr:
        pytest.skip("this Triton wheel ships no cuobjdump")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [("2048", "2", "8"), ("8192", "3", "8")]
    for _, _, _, registers, stack, shared, programs in rows:
        assert 0 < int(registers) <= 255 and int(stack) >= 0
        assert int(shared) > 0 and int(programs) >= 1


def test_it_refuses_the_interpreter(load_script) -> None:
    probe = load_script("monarch_resources")  # the tests import Triton interpreted
    with pytest.raises(RuntimeError, match="unset it"):
        probe.usage(2048, warps=4)
