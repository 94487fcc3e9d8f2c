"""Probe (issue 16): what `hyena_lite.monarch_conv`'s kernels ask of an H100's streaming
multiprocessor, compiled on any machine, no GPU needed.

Triton compiles a kernel for a named target (`GPUTarget("cuda", 90, 32)`: Hopper) with the
`ptxas` its wheel ships, and `cuobjdump -res-usage` reads the cubin's registers a thread, the
stack a thread (where registers spill) and the static shared memory; Triton's metadata adds the
shared memory it allocates at launch. An SM holds 65,536 registers and 228 KiB of shared memory,
so these numbers say how many programs (channels) an SM can run at once, and whether a tile lives
in registers or spills, before any device time is spent.

    python scripts/monarch_resources.py --fft 8192 --warps 4,8,16
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import triton
from triton.backends.compiler import GPUTarget

from hyena_lite import monarch_conv

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


def usage(n: int, warps: int, precision: str = "tf32", stages: int | None = None) -> dict:
    """Registers and stack a thread, shared memory a program, and programs an SM can hold, of the
    gated convolution kernel for FFT size n compiled for Hopper."""
    if monarch_conv.interpreted():
        raise RuntimeError(
            "TRITON_INTERPRET=1 makes the kernels Python functions, which do not compile: unset it"
        )
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
    compiled = triton.compile(source, target=HOPPER, options={"num_warps": warps})
    with tempfile.TemporaryDirectory() as folder:
        cubin = Path(folder) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        listing = subprocess.run(
            [str(cuobjdump()), "-res-usage", str(cubin)], capture_output=True, text=True, check=True
        ).stdout
    registers, stack, static_shared = (int(x) for x in _USAGE.search(listing).groups())
    shared = static_shared + compiled.metadata.shared
    threads = 32 * warps
    return {
        "n": n,
        "stages": stages,
        "sizes": sizes,
        "warps": warps,
        "precision": precision,
        "registers_per_thread": registers,
        "stack_bytes_per_thread": stack,
        "shared_bytes": shared,
        "programs_per_sm": min(
            REGISTERS_PER_SM // (registers * threads), SHARED_PER_SM // max(shared, 1)
        ),
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
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
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
