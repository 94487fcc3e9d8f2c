"""How fast a decoding step's GPT-2 MLPs run as one Triton kernel each (issue 16), against the
same MLPs compiled by torch.compile (cuBLAS products and inductor's GELU), both recorded as one
CUDA graph: twelve GPT-2-124M MLPs (width 768, hidden 3,072, bf16, random weights) chained as a
step chains them (x <- x + mlp_i(x)), at batches 1, 4 and 16, the Triton kernel with 8 to 64
hidden units a program and with `units_per_program`'s choice. Per row: time per chain (median and
interquartile range over blocks of replays, `hyena_lite.timing`), microseconds per MLP, the
bandwidth that reading the weights once implies, its ratio to a large copy's (the floor), and the
largest difference from the eager chain.

    PYTHONPATH=. python3 scripts/mlp_step_speed.py --out $OUT/mlp_step_speed.json  # GPU, ~1 min
    TRITON_INTERPRET=1 PYTHONPATH=. python3 scripts/mlp_step_speed.py --smoke --out /tmp/m.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from transformers import GPT2Config, GPT2LMHeadModel

from hyena_lite import runs
from hyena_lite.experiments.bench import copy_bandwidth_gbs
from hyena_lite.mlp_kernel import MLPStep, units_per_program
from hyena_lite.provenance import provenance
from hyena_lite.recompiles import allow_recompiles
from hyena_lite.timing import measured_row

UNITS = (8, 16, 32, 64)  # hidden units per program tried, beside units_per_program's choice


def gpt2_mlps(layers: int, width: int, device: torch.device, dtype: torch.dtype) -> nn.ModuleList:
    """`layers` GPT-2 MLPs (hidden 4 x width) with random weights of a trained model's scale."""
    torch.manual_seed(0)
    config = GPT2Config(n_layer=layers, n_embd=width, n_head=4, vocab_size=64, n_positions=8)
    blocks = GPT2LMHeadModel(config).transformer.h
    mlps = nn.ModuleList(block.mlp for block in blocks).eval()
    for parameter in mlps.parameters():
        parameter.data.normal_(0.0, 0.02)
    return mlps.to(device, dtype)


def chain(parts: list[nn.Module], x: Tensor) -> Callable[[], Tensor]:
    """The step's chain x <- x + part(x) over `parts`, on the static input x [B, 1, D]."""

    def run() -> Tensor:
        y = x
        for part in parts:
            y = y + part(y)
        return y

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the results file (JSON)")
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--blocks", type=int, default=9)
    p.add_argument("--smoke", action="store_true", help="tiny shapes, float32, any device")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    layers, width = (2, 32) if args.smoke else (12, 768)
    dtype = torch.float32 if args.smoke or device.type != "cuda" else torch.bfloat16
    mlps = gpt2_mlps(layers, width, device, dtype)
    hidden = mlps[0].c_fc.weight.shape[1]
    weight_bytes = sum(p.numel() * p.element_size() for p in mlps.parameters())
    bandwidth = copy_bandwidth_gbs(device, mib=64 if args.smoke else 1024)
    report: dict[str, Any] = {
        **provenance(shlex.join(["python", *sys.argv])),
        "shapes": {"layers": layers, "width": width, "hidden": hidden, "dtype": str(dtype)},
        "weight_mb": weight_bytes / 2**20,
        "copy_bandwidth_gbs": bandwidth,
        "floor_us_per_mlp": weight_bytes / layers / (bandwidth * 1e9) * 1e6,
        "rows": [],
    }
    compile_on = device.type == "cuda"
    allow_recompiles()  # one compiled chain per variant and batch, none left eager
    for batch in (int(b) for b in args.batches.split(",")):
        x = torch.randn(batch, 1, width, device=device, dtype=dtype)
        with torch.no_grad():
            reference = chain(list(mlps), x)().float()
            variants: dict[str, list[nn.Module]] = {"torch": list(mlps)}
            chosen = units_per_program(hidden, device)
            for units in (*UNITS, None):
                name = f"triton_{units}" if units else f"triton_auto_{chosen}"
                variants[name] = [MLPStep(mlp, units) for mlp in mlps]
            for name, parts in variants.items():
                fn = chain(parts, x)
                if compile_on:
                    fn = torch.compile(fn)
                row: dict[str, Any] = {"batch": batch, "variant": name}
                row |= measured_row(fn, device, args.blocks, reference)
                if "ms" in row:
                    row["us_per_mlp"] = row["ms"] * 1e3 / layers
                    row["weights_gbs"] = weight_bytes / (row["ms"] * 1e-3) / 1e9
                    row["floor_ratio"] = row["us_per_mlp"] / report["floor_us_per_mlp"]
                report["rows"].append(row)
                print(row, flush=True)
                runs.write_json(args.out, report)
    runs.write_json(args.out, report)


if __name__ == "__main__":
    main()
