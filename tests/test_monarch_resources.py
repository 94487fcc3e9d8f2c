"""scripts/monarch_resources.py: the matrix-product convolution kernel compiled for Hopper on a
machine without a GPU, and its registers, spills, shared memory and programs an SM read back."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "monarch_resources.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    """The script compiling for real (no interpreter), or the test skipped without cuobjdump."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(SCRIPT.parent.parent)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300
    )
    if "ships no cuobjdump" in done.stderr:
        pytest.skip("this Triton wheel ships no cuobjdump")
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_the_kernels_compile_for_hopper_and_report_their_resources() -> None:
    done = _run("--fft", "2048", "8192", "--warps", "8")
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [("2048", "2", "8"), ("8192", "3", "8")]
    for _, _, _, registers, stack, shared, programs in rows:
        assert 0 < int(registers) <= 255 and int(stack) >= 0
        assert int(shared) > 0 and int(programs) >= 1


def test_it_refuses_the_interpreter(load_script) -> None:
    probe = load_script("monarch_resources")  # the tests import Triton interpreted
    with pytest.raises(RuntimeError, match="unset it"):
        probe.usage(2048, warps=4)


def test_the_direct_kernel_compiles_and_its_loop_is_counted() -> None:
    done = _run("--toeplitz", "64:64:4,32:128:8")
    header, *rows = (line.split() for line in done.stdout.splitlines())
    assert header[-3:] == ["loop_instructions", "issue_cycles", "mma_cycles"]
    assert [row[:3] for row in rows] == [["64", "64", "4"], ["32", "128", "8"]]
    for row in rows:
        block, tile_rows, warps, instructions = (int(row[i]) for i in (0, 1, 2, 7))
        assert 20 < instructions < 2000
        assert float(row[8]) == instructions * warps / 4
        assert float(row[9]) == tile_rows * block * block / 2048


def test_the_longest_loop_is_found_in_a_listing(load_script) -> None:
    probe = load_script("monarch_resources")
    sass = "\n".join(
        f"        /*{address:04x}*/                   {text} ;"
        for address, text in [
            (0x00, "MOV R1, c[0x0][0x28]"),
            (0x10, "IADD3 R2, R2, 0x1, RZ"),  # a loop of 3: 0x10 to 0x30
            (0x20, "ISETP.GE.AND P0, PT, R2, 0x8, PT"),
            (0x30, "@!P0 BRA 0x10"),
            (0x40, "HGMMA.64x64x16.F32.BF16 R24, gdesc[UR8], R24"),  # a loop of 2
            (0x50, "@P0 BRA 0x40"),
            (0x60, "BRA 0x60"),  # the kernel's end: jumps to itself, not back
            (0x70, "EXIT"),
        ]
    )
    assert probe.loop_instructions(sass) == 3
