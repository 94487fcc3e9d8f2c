"""Decoding speed of a Hyena student through Hugging Face `model.generate(use_cache=True)` beside
hyena_lite's own recurrent decoder (`hyena_lite.generation.generate`), on the same device.

A GPT-2-shaped student (random weights, by default GPT-2 124M's shape with a position table long
enough for the context) decodes `--new-tokens` greedy tokens after a prompt of `--context` tokens,
batch 1, with the same stored modal fit both ways (fitted once first, timed apart). Tokens per
second count the decoding steps only: the prompt's prefill (which also gives the first new token)
is timed apart, as `Generation.tokens_per_s` does; for generate() a stopping criterion that
stops nothing notes the time of each new token. Each way runs once to warm up, then `--repeats`
times; the best run counts. Prints, and with --json writes, one JSON object with provenance;
--merge-into also writes it under the key "hf_generate_speed" of a results file (its other keys
untouched), beside the library's own decoder in generation_h200.json, and --from-json merges a
result measured before instead of measuring:

    PYTHONPATH=. python scripts/hf_generate_speed.py --device cuda --context 8192 \
        --dtype bfloat16 --json hyena_lite/results/hf_generate_h200.json
    python scripts/hf_generate_speed.py --from-json hyena_lite/results/hf_generate_h200.json \
        --merge-into hyena_lite/results/generation_h200.json
    python scripts/hf_generate_speed.py --layers 2 --width 64 --heads 2 --context 256 \
        --new-tokens 64 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel, StoppingCriteria, StoppingCriteriaList

from hyena_lite.generation import generate, synchronize
from hyena_lite.hf_cache import fit_recurrent_states
from hyena_lite.models import convert
from hyena_lite.provenance import provenance


def student(args: argparse.Namespace) -> torch.nn.Module:
    """A random GPT-2-shaped all-Hyena student on the device, its modal fit stored."""
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=args.layers,
        n_embd=args.width,
        n_head=args.heads,
        n_positions=args.context + args.new_tokens,
        bos_token_id=None,
        eos_token_id=None,  # no end token: both decode exactly new_tokens, with no logits processor
    )
    model = convert(GPT2LMHeadModel(config).eval()).eval().to(args.device)
    return model.to(getattr(torch, args.dtype))


def timed(run: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds that run() takes, the device's queued work included, and what it returned."""
    synchronize(device)
    start = time.perf_counter()
    out = run()
    synchronize(device)
    return time.perf_counter() - start, out


class StepClock(StoppingCriteria):
    """Stops nothing; notes the time after each new token (the first comes from the prefill)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times = device, []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> Any:
        synchronize(self.device)
        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def measure(args: argparse.Namespace) -> dict:
    """Both decoders' decoding tokens/s, their prefill seconds, and whether their tokens agree."""
    device = torch.device(args.device)
    model = student(args)
    fit_s, fits = timed(lambda: fit_recurrent_states(model), device)
    ids = torch.randint(0, model.config.vocab_size, (1, args.context), device=device)

    def library() -> tuple[float, float, list[int]]:
        out = generate(model, ids, args.new_tokens, mode="recurrent", fits=fits)
        return out.prefill_s, out.decode_s, out.tokens[0].tolist()

    def hf_generate() -> tuple[float, float, list[int]]:
        clock = StepClock(device)
        total, out = timed(
            lambda: model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=args.new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
                stopping_criteria=StoppingCriteriaList([clock]),
            ),
            device,
        )
        decode = clock.times[-1] - clock.times[0]
        return total - decode, decode, out[0, args.context :].tolist()

    rows = {}
    for name, way in (("library", library), ("generate", hf_generate)):
        runs = [way() for _ in range(1 + args.repeats)][1:]  # the first run warms up
        prefill, decode, tokens = min(runs, key=lambda run: run[1])
        rows[name] = {
            "prefill_s": prefill,
            "decode_s": decode,
            "tokens_per_s": (args.new_tokens - 1) / decode,
            "tokens": tokens,
        }
    return {
        "fit_s": fit_s,
        **rows,
        "tokens_equal": rows["library"]["tokens"] == rows["generate"]["tokens"],
        "generate_over_library_time": rows["generate"]["decode_s"] / rows["library"]["decode_s"],
    }


MERGE_KEY = "hf_generate_speed"  # this script's result in a results file that merges it


def merge_result(result: dict, target: Path) -> None:
    """Write `result` (this script's) under MERGE_KEY of the JSON object in `target`, keeping its
    other keys as they are; ValueError when either is not what it should be."""
    if not {"library", "generate", "settings"} <= set(result):
        raise ValueError(
            "the result to merge is not one of scripts/hf_generate_speed.py (no library, generate "
            "and settings keys): give --from-json a file that this script wrote with --json"
        )
    if not target.is_file():
        raise ValueError(f"--merge-into {target}: no such file; name an existing results JSON")
    merged = json.loads(target.read_text())
    if not isinstance(merged, dict):
        raise ValueError(f"--merge-into {target}: holds no JSON object to add a key to")
    merged[MERGE_KEY] = result
    target.write_text(json.dumps(merged, indent=2) + "\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--context", type=int, default=8192, help="prompt tokens")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, help="CPU threads (1 on a shared machine: no idle-thread waits)"
    )
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument(
        "--merge-into",
        type=Path,
        help=f'also write the result under the key "{MERGE_KEY}" of this results JSON '
        "(e.g. hyena_lite/results/generation_h200.json), keeping its other keys",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        help="merge the result this script wrote to this file before, measuring nothing "
        "(needs --merge-into)",
    )
    args = parser.parse_args(argv)
    if args.merge_into and not args.merge_into.is_file():  # before measuring, not after
        parser.error(f"--merge-into {args.merge_into}: no such file; name an existing results JSON")
    if args.from_json:
        if not args.merge_into:
            parser.error("--from-json only merges a result: give --merge-into too")
        result = json.loads(args.from_json.read_text())
        merge_result(result, args.merge_into)
        return result
    if args.threads:
        torch.set_num_threads(args.threads)
    options = ("json", "merge_into", "from_json")
    result = {
        **provenance(" ".join(["python", "scripts/hf_generate_speed.py", *(argv or sys.argv[1:])])),
        "settings": {k: v for k, v in vars(args).items() if k not in options},
        **measure(args),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    if args.merge_into:
        merge_result(result, args.merge_into)
    return result


if __name__ == "__main__":
    main()
