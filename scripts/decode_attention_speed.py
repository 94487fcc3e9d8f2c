"""How fast one query's attention over a static key-value cache runs (issue 16): the teacher's
attention at a decoding step, GPT-2-124M's twelve layers chained as a step chains them (each layer
its own cache, bf16, random values), at contexts 1K to 32K and batch 1, with three kernels:
PyTorch's scaled dot-product attention with a mask (whichever backend it picks, cuDNN's on a
Hopper GPU), FlexAttention (compiled; its decoding kernel splits the keys), and this project's
Triton kernel split over the keys (`hyena_lite.split_attention`) at several chunk sizes and at
`keys_per_program`'s choice. Each chain is recorded as a CUDA graph and timed (median and
interquartile range, `hyena_lite.timing`); per row also microseconds a layer, the floor (the
visible keys' and values' bytes at a large copy's bandwidth) and the largest difference from the
masked attention in float32.

    PYTHONPATH=. python3 scripts/decode_attention_speed.py --out $OUT/decode_attention.json  # GPU
    TRITON_INTERPRET=1 PYTHONPATH=. python3 scripts/decode_attention_speed.py --smoke --out a.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from hyena_lite import runs
from hyena_lite.decode_attention import masked_attention
from hyena_lite.experiments.bench import copy_bandwidth_gbs
from hyena_lite.fastdecode import cache_length
from hyena_lite.provenance import provenance
from hyena_lite.recompiles import allow_recompiles
from hyena_lite.split_attention import keys_per_program, split_attention
from hyena_lite.timing import measured_row

CHUNKS = (64, 128, 256, 512, 1024)  # keys a program of the split kernel, beside the default


def flex_attention_over(
    q: Tensor, keys: Tensor, values: Tensor, position: Tensor, scale: float
) -> Tensor:
    """FlexAttention of q [B, H, D] over keys 0 .. position, the mask a score modification (a
    fused kernel only under torch.compile; eager, it computes every score as plain torch)."""
    from torch.nn.attention.flex_attention import flex_attention

    def visible(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return torch.where(kv_idx <= position, score, -float("inf"))

    return flex_attention(q[:, :, None], keys, values, score_mod=visible, scale=scale)[:, :, 0]


def layers_of(
    attend: Callable[..., Tensor], queries: Tensor, caches: list[tuple[Tensor, Tensor]], position
) -> Callable[[], Tensor]:
    """Every layer's attention in turn (query i + the output of layer i - 1, so that the layers
    form a chain as in a step), on static inputs."""
    scale = queries.shape[-1] ** -0.5

    def run() -> Tensor:
        out = torch.zeros_like(queries[0])
        for q, (keys, values) in zip(queries, caches, strict=True):
            out = attend(q + out, keys, values, position, scale)
        return out

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the results file (JSON)")
    p.add_argument("--contexts", default=None, help="default 1024,4096,8192,32768 (smoke: 100)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--blocks", type=int, default=9)
    p.add_argument("--smoke", action="store_true", help="tiny shapes, float32, any device")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    layers, heads, dim = (2, 2, 16) if args.smoke else (12, 12, 64)
    dtype = torch.float32 if args.smoke or device.type != "cuda" else torch.bfloat16
    bandwidth = copy_bandwidth_gbs(device, mib=64 if args.smoke else 1024)
    report: dict[str, Any] = {
        **provenance(shlex.join(["python", *sys.argv])),
        "shapes": {"layers": layers, "heads": heads, "head_dim": dim, "dtype": str(dtype)},
        "copy_bandwidth_gbs": bandwidth,
        "rows": [],
    }
    cuda = device.type == "cuda"
    allow_recompiles()
    contexts = args.contexts or ("100" if args.smoke else "1024,4096,8192,32768")
    for context in (int(c) for c in contexts.split(",")):
        length, batch = cache_length(context), args.batch
        torch.manual_seed(context)
        shape = (batch, heads, length, dim)
        caches = [
            tuple(torch.randn(shape, device=device, dtype=dtype) for _ in range(2))
            for _ in range(layers)
        ]
        queries = torch.randn(layers, batch, heads, dim, device=device, dtype=dtype)
        position = torch.tensor(context, device=device)  # the newest key: context + 1 visible
        visible_bytes = (
            2 * layers * batch * heads * (context + 1) * dim * caches[0][0].element_size()
        )
        floor_us = visible_bytes / layers / (bandwidth * 1e9) * 1e6
        with torch.no_grad():
            reference = layers_of(
                masked_attention,
                queries.float(),
                [(k.float(), v.float()) for k, v in caches],
                position,
            )()
        chosen = keys_per_program(batch * heads, length, device)
        variants: dict[str, Callable[..., Tensor]] = {"sdpa": masked_attention}
        if cuda:
            variants["flex"] = flex_attention_over
        arrivals = torch.zeros(batch * heads, dtype=torch.int32, device=device)
        for chunk in (*CHUNKS, None):
            name = f"split_{chunk}" if chunk else f"split_auto_{chosen}"
            variants[name] = lambda q, k, v, p, s, c=chunk or chosen, a=arrivals: split_attention(
                q, k, v, p, s, c, a
            )
        for name, attend in variants.items():
            fn = layers_of(attend, queries, caches, position)
            if cuda:  # compiled afresh (the split variants differ only in a lambda's default,
                torch._dynamo.reset()  # and their rows of one run came out alike: see its note)
                fn = torch.compile(fn, dynamic=False)
            row: dict[str, Any] = {"context": context, "batch": batch, "variant": name}
            with torch.no_grad():
                row |= measured_row(fn, device, args.blocks, reference)
            if "ms" in row:
                row["us_per_layer"] = row["ms"] * 1e3 / layers
                row["floor_us_per_layer"] = floor_us
                row["floor_ratio"] = row["us_per_layer"] / floor_us
            report["rows"].append(row)
            print(row, flush=True)
            runs.write_json(args.out, report)
    runs.write_json(args.out, report)


if __name__ == "__main__":
    main()
