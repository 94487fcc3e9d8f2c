"""Probe (issue 16): what `hyena_lite.monarch_conv`'s and `hyena_lite.toeplitz_conv`'s kernels ask
of an H100's streaming multiprocessor, compiled on any machine, no GPU needed.

Triton compiles a kernel for a named target (`GPUTarget("cuda", 90, 32)`: Hopper) with the
`ptxas` its wheel ships, and `cuobjdump -res-usage` reads the cubin's registers a thread, the
stack a thread (where registers spill) and the static shared memory; Triton's metadata adds the
shared memory it allocates at launch. An SM holds 65,536 registers and 228 KiB of shared memory,
so these numbers say how many programs (channels) an SM can run at once, and whether a tile lives
in registers or spills, before any device time is spent.

For the direct kernel (`--toeplitz block:rows:warps`) it also counts the instructions of the main
loop's body (one lag: a Toeplitz tile of the filter and a tile of the signal loaded, one matrix
product) in the SASS: a warp issues one instruction a cycle on each of the SM's four schedulers,
so `issue_cycles` = instructions x warps / 4 is the least time a lag takes on an SM, against
`mma_cycles` = rows x block^2 / 2048 (the H100's dense bf16 rate, 2,048 multiply-adds a cycle an
SM). Where issue exceeds the products, the kernel is bound by building its tiles, not by tensor
cores. The kernel is compiled as a launch specialises it: sizes and pointers divisible by 16.

    python scripts/monarch_resources.py --fft 8192 --warps 4,8,16
    python scripts/monarch_resources.py --toeplitz 64:64:4,64:128:8
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import triton
from triton.backends.compiler import GPUTarget

from hyena_lite import monarch_conv, runs, toeplitz_conv
from hyena_lite.provenance import provenance

HOPPER = GPUTarget("cuda", 90, 32)
REGISTERS_PER_SM = 65536
SHARED_PER_SM = 228 * 1024
_USAGE = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+)")


def cuobjdump() -> Path:
    """The `cuobjdump` that Triton's NVIDIA backend ships."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not tool.exists():
        raise FileNotFoundError(f"this Triton wheel ships no cuobjdump (looked for {tool})")
    return tool


def _signature(kernel: triton.JITFunction, constants: dict[str, Any]) -> dict[str, str]:
    """Argument types as `causal_conv` passes them: bf16 signals and gates, float32 tables and
    output, int32 sizes, the float32 1 / n, and the compile-time constants."""
    types = {}
    for name in kernel.arg_names:
        if name in constants:
            types[name] = "constexpr"
        elif name in ("u_ptr", "gate_ptr"):
            types[name] = "*bf16"
        elif name.endswith("_ptr"):
            types[name] = "*fp32"
        else:
            types[name] = "fp32" if name == "inv_n" else "i32"
    return types


def _refuse_the_interpreter() -> None:
    """Raise where TRITON_INTERPRET=1 has made the kernels Python functions (nothing compiles)."""
    if monarch_conv.interpreted():
        raise RuntimeError(
            "TRITON_INTERPRET=1 makes the kernels Python functions, which do not compile: unset it"
        )


def usage(n: int, warps: int, precision: str = "tf32", stages: int | None = None) -> dict:
    """Registers and stack a thread, shared memory a program, and programs an SM can hold, of the
    gated convolution kernel for FFT size n compiled for Hopper."""
    _refuse_the_interpreter()
    stages = stages or (3 if n >= monarch_conv.MIN_FFT3 else 2)
    if stages == 3:
        kernel = monarch_conv._conv3_kernel
        sizes = dict(zip(("N1", "N2", "N3"), monarch_conv.fft_factors3(n), strict=True))
    else:
        kernel = monarch_conv._conv2_kernel
        sizes = dict(zip(("N1", "N2"), monarch_conv.fft_factors(n), strict=True))
    constants = {**sizes, "HAS_GATE": True, "PRECISION": precision}
    source = triton.compiler.ASTSource(
        fn=kernel, signature=_signature(kernel, constants), constexprs=constants
    )
    compiled, registers, stack, shared, _ = _compile(source, warps)
    return {
        "n": n,
        "stages": stages,
        "sizes": sizes,
        "warps": warps,
        "precision": precision,
        **_occupancy(registers, stack, shared, warps),
    }


def _compile(source: Any, warps: int) -> tuple[Any, int, int, int, str]:
    """Compile for Hopper; return the kernel, its registers and stack a thread, its shared memory
    a program (static plus allocated at launch) and its SASS."""
    compiled = triton.compile(source, target=HOPPER, options={"num_warps": warps})
    with tempfile.TemporaryDirectory() as folder:
        cubin = Path(folder) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        listing, sass = (
            subprocess.run(
                [str(cuobjdump()), flag, str(cubin)], capture_output=True, text=True, check=True
            ).stdout
            for flag in ("-res-usage", "-sass")
        )
    registers, stack, static_shared = (int(x) for x in _USAGE.search(listing).groups())
    return compiled, registers, stack, static_shared + compiled.metadata.shared, sass


def _occupancy(registers: int, stack: int, shared: int, warps: int) -> dict[str, int]:
    """The resources a program takes and how many programs an SM holds at once."""
    return {
        "registers_per_thread": registers,
        "stack_bytes_per_thread": stack,
        "shared_bytes": shared,
        "programs_per_sm": min(
            REGISTERS_PER_SM // (registers * 32 * warps), SHARED_PER_SM // max(shared, 1)
        ),
    }


_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4})\*/\s+([^;]*);")
_BACK = re.compile(r"BRA (0x[0-9a-f]+)")


def loop_instructions(sass: str) -> int:
    """Instructions in the longest loop of a SASS listing: from a backward branch's target to the
    branch."""
    code = [(int(address, 16), text) for address, text in _INSTRUCTION.findall(sass)]
    spans = [
        (int(jump.group(1), 16), address)
        for address, text in code
        if (jump := _BACK.search(text)) and int(jump.group(1), 16) < address
    ]
    return max((sum(lo <= a <= hi for a, _ in code) for lo, hi in spans), default=0)


def toeplitz_usage(block: int, rows: int, warps: int) -> dict:
    """Resources, occupancy and the main loop's issue cycles against its tensor-core cycles of
    `toeplitz_conv`'s kernel as `FastPath.toeplitz` runs it for a bf16 model (every tensor bf16,
    the gate's short filter inside), compiled for Hopper as a launch specialises it."""
    _refuse_the_interpreter()
    kernel = toeplitz_conv._direct_kernel
    constants = {
        "BLOCK": block,
        "ROWS": rows,
        "VEC": 8,  # bf16 taps a 16-byte load holds
        "HAS_GATE": True,
        "SHORT": 3,  # the gate's short filter inside, as the fast path runs it
        "BF16": True,
        "PRECISION": "tf32",
        "ROUNDED": False,
    }
    types = {  # every tensor bf16, as FastPath.toeplitz passes them for a bf16 model
        name: "constexpr" if name in constants else "*bf16" if name.endswith("_ptr") else "i32"
        for name in kernel.arg_names
    }
    aligned = {
        (index,): [["tt.divisibility", 16]]
        for index, name in enumerate(kernel.arg_names)
        if name not in constants and name != "channels"
    }
    source = triton.compiler.ASTSource(
        fn=kernel, signature=types, constexprs=constants, attrs=aligned
    )
    _, registers, stack, shared, sass = _compile(source, warps)
    instructions = loop_instructions(sass)
    return {
        "block": block,
        "rows": rows,
        "warps": warps,
        **_occupancy(registers, stack, shared, warps),
        "loop_instructions": instructions,
        "issue_cycles": instructions * warps / 4,
        "mma_cycles": rows * block * block / 2048,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fft", type=int, nargs="+", default=[8192], help="FFT sizes n")
    parser.add_argument(
        "--warps",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[4, 8, 16],
        help="comma-separated warps a program",
    )
    parser.add_argument("--precision", default="tf32", choices=["tf32", "ieee", "tf32x3"])
    parser.add_argument(
        "--toeplitz",
        type=lambda text: [tuple(int(x) for x in item.split(":")) for item in text.split(",")],
        default=[],
        help="toeplitz_conv tile shapes, block:rows:warps, comma-separated (then no --fft)",
    )
    parser.add_argument("--out", help="with --toeplitz: also write the rows to this JSON file")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.toeplitz:
        print("block rows warps registers stack_bytes shared_bytes programs_per_sm "
              "loop_instructions issue_cycles mma_cycles")  # fmt: skip
        rows = []
        for shape in args.toeplitz:
            rows.append(toeplitz_usage(*shape))
            print(" ".join(str(value) for value in rows[-1].values()), flush=True)
        if args.out:
            command = shlex.join(["python", "scripts/monarch_resources.py", *sys.argv[1:]])
            target = {"target": "cuda sm_90 (Hopper), compiled without a GPU", "warp_size": 32}
            runs.write_json(args.out, {**provenance(command), **target, "rows": rows})
        return 0
    print("n stages warps registers stack_bytes shared_bytes programs_per_sm")
    for n in args.fft:
        for warps in args.warps:
            row = usage(n, warps, args.precision)
            print(
                f"{n} {row['stages']} {warps} {row['registers_per_thread']} "
                f"{row['stack_bytes_per_thread']} {row['shared_bytes']} {row['programs_per_sm']}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
