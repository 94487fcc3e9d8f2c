"""Does a relative-position (RoPE) teacher learn to copy where the mini GPT-2 (learned absolute
positions) does not? Trains small causal LMs of the cpu profile's size (4 layers, width 128, 4
heads) on GPT-2's BPE trimmed to 4,096 tokens, with the library's pre-training batches (corpus
windows, a fraction of them replaced by repeated spans: hyena_lite.mini_teacher.pretraining_batches)
and probes their copy accuracy (hyena_lite.probes.copy_curve) as they train, on one CPU thread.

    python scripts/teacher_rope_probe.py --variants gpt2,llama --steps 300 --out OUT.json
    python scripts/teacher_rope_probe.py --tiny --out /tmp/tiny.json     # seconds

Variants: gpt2 (GPT2LMHeadModel, learned absolute positions), llama (LlamaForCausalLM: RoPE,
RMSNorm, SwiGLU), each untied unless --tied, and either at a shorter sequence (-s128: seq_len
128, batch 32, the same tokens per step). Recorded per variant: copy accuracy at 32 and 64 every
--probe-every steps, at the end copy at 32/64/128 on 64 sequences each, validation bits per byte
(NLL of every non-special token of the validation split over its UTF-8 bytes) and training
tokens/s (probes excluded). The machine's other work slows the tokens/s: say so with the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from hyena_lite import evaluate, probes
from hyena_lite.data import load_corpus, ordinary_tokens, tokenize_split
from hyena_lite.mini_teacher import (
    MINI_CONTEXT,
    mini_gpt2_config,
    name_causal_lm_loss,
    pretraining_batches,
)
from hyena_lite.profiles import Profile, get_profile
from hyena_lite.provenance import provenance
from hyena_lite.training import TrainConfig, lr_factor
from hyena_lite.trimmed_tokenizer import trimmed_gpt2_tokenizer

VOCAB = 4096
ARCHITECTURES = ("gpt2", "llama")
SHORT = {"seq_len": 128, "batch_size": 32}  # the -s128 variants: same tokens per step
TINY = {"seq_len": 32, "batch_size": 2, "teacher_layers": 1, "teacher_width": 32}


def variant(name: str) -> tuple[str, dict[str, int]]:
    """(architecture, profile changes) of a variant name: gpt2, llama, gpt2-s128, llama-s128."""
    arch, _, suffix = name.partition("-")
    if arch not in ARCHITECTURES or suffix not in ("", "s128"):
        raise ValueError(f"unknown variant {name!r}: use gpt2, llama, gpt2-s128 or llama-s128")
    return arch, (SHORT if suffix else {})


def build_model(
    arch: str, profile: Profile, vocab_size: int, eos: int, tied: bool = False
) -> torch.nn.Module:
    """A causal LM of the profile's teacher size, no dropout, its head the token embedding or
    not (`tied`); GPT-2 or Llama architecture."""
    width, layers, heads = profile.teacher_width, profile.teacher_layers, profile.teacher_heads
    if arch == "gpt2":  # the cpu profile's teacher itself (eos is the trimmed vocabulary's last id)
        config = mini_gpt2_config(dataclasses.replace(profile, teacher_tied=tied), vocab_size)
        assert config.eos_token_id == eos, "the trimmed vocabulary ends with <|endoftext|>"
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=MINI_CONTEXT,
            tie_word_embeddings=tied,
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=eos,
        )
        model = LlamaForCausalLM(config)
    name_causal_lm_loss(model)
    return model


def sinusoidal_positions(model: torch.nn.Module, std: float) -> None:
    """Start GPT-2's learned position embeddings as the sinusoids of Vaswani et al. (2017),
    scaled to standard deviation `std`: a linear map of them can shift position, which a
    previous-token head needs."""
    wpe = model.transformer.wpe.weight
    positions, width = wpe.shape
    angle = torch.arange(positions)[:, None] / 10000 ** (torch.arange(0, width, 2) / width)
    table = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)
    with torch.no_grad():
        wpe.copy_(table / table.std() * std)


def copy_at(model, tokenizer, lengths, n: int) -> dict[str, float]:
    model.eval()
    curve = probes.copy_curve(model, tokenizer, lengths, n=n, seed=1)
    model.train()
    return {str(c["length"]): c["accuracy"] for c in curve}


def run_variant(name: str, args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    """Train one variant for args.steps and score it."""
    arch, changes = variant(name)
    profile = get_profile("cpu").replace(
        teacher_copy_fraction=args.copy,
        teacher_copy_random=args.copy_random,
        seed=args.seed,
        **changes,
        **({"teacher_heads": args.heads} if args.heads else {}),
        **({"teacher_layers": args.layers} if args.layers else {}),
    )
    if args.tiny:
        profile = profile.replace(**TINY)
    tokenizer, eos = data["tokenizer"], data["tokenizer"].eos_token_id
    torch.manual_seed(profile.seed)
    model = build_model(arch, profile, len(tokenizer), eos, args.tied)
    if args.sinusoidal is not None:
        sinusoidal_positions(model, args.sinusoidal)
    model.to(args.device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    # the library's schedule: linear warm-up, cosine to lr / 10, after a stable phase if asked
    schedule = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        warmup=max(1, args.steps // 20),
        decay_fraction=args.decay_fraction,
    )

    batches = pretraining_batches(data["train"], profile, data["vocab"], eos)
    probe_lengths = [n for n in (32, 64) if 2 * n + 1 <= 4 * profile.seq_len]
    history, train_seconds, losses = [], 0.0, []
    model.train()
    for step in range(args.steps):
        batch = next(batches).long().to(args.device)
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = args.lr * lr_factor(step, schedule)
        with torch.autocast(batch.device.type, torch.bfloat16, enabled=args.bf16):
            loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())  # synchronises, so the time below is the step's on a GPU too
        train_seconds += time.perf_counter() - start
        if (step + 1) % args.probe_every == 0 or step + 1 == args.steps:
            copy = copy_at(model, tokenizer, probe_lengths, n=16)
            history.append(
                {"step": step + 1, "train_loss": losses[-1], "seconds": train_seconds, "copy": copy}
            )
            print(
                f"  {name} step {step + 1}: loss {losses[-1]:.3f} copy {copy} "
                f"({train_seconds:.0f} s)",
                flush=True,
            )
    model.eval()
    final_copy = copy_at(model, tokenizer, [32, 64, 128], n=64 if not args.tiny else 8)
    reached = next((h["step"] for h in history if h["copy"].get("64", 0.0) >= 0.5), None)
    return {
        "architecture": arch,
        "tied": args.tied,
        "seed": args.seed,
        "bf16": args.bf16,
        "decay_fraction": args.decay_fraction,
        "sinusoidal": args.sinusoidal,
        "lr": args.lr,
        "copy_fraction": args.copy,
        "copy_random": args.copy_random,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seq_len": profile.seq_len,
        "batch_size": profile.batch_size,
        "layers": profile.teacher_layers,
        "width": profile.teacher_width,
        "heads": profile.teacher_heads,
        "steps": args.steps,
        "tokens": args.steps * profile.batch_size * profile.seq_len,
        "train_seconds": round(train_seconds, 1),
        "tokens_per_second": round(
            args.steps * profile.batch_size * profile.seq_len / train_seconds
        ),
        "final_train_loss": sum(losses[-10:]) / len(losses[-10:]),
        "val_bits_per_byte": evaluate.window_bits_per_byte(
            model, data["valid"], profile.seq_len, data["nbytes"]
        ),
        "copy": final_copy,
        "first_step_copy64_ge_0.5": reached,
        "history": history,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants",
        default="gpt2,llama",
        help="comma-separated: gpt2, llama, gpt2-s128, llama-s128",
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--copy", type=float, default=0.25, help="fraction of repeated-span rows")
    parser.add_argument(
        "--copy-random",
        type=float,
        default=0.5,
        help="of those, the fraction whose span is random tokens",
    )
    parser.add_argument("--tied", action="store_true", help="head = token embedding")
    parser.add_argument("--probe-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=get_profile("cpu").seed)
    parser.add_argument("--heads", type=int, default=0, help="attention heads (0: the profile's)")
    parser.add_argument("--layers", type=int, default=0, help="layers (0: the profile's)")
    parser.add_argument(
        "--decay-fraction",
        type=float,
        default=None,
        help="warmup-stable-decay: cosine decay over this last fraction (default: all cosine)",
    )
    parser.add_argument(
        "--sinusoidal", type=float, default=None, help="gpt2: sinusoidal position init of this std"
    )
    parser.add_argument("--bf16", action="store_true", help="train under bfloat16 autocast")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (tokens/s then are the GPU's)")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.probe_every < 1:
        parser.error("--steps and --probe-every must be at least 1")
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    for name in names:
        try:
            variant(name)
        except ValueError as error:
            parser.error(str(error))
    torch.set_num_threads(args.threads)
    tokenizer = trimmed_gpt2_tokenizer(VOCAB, "offline")
    corpus = load_corpus("offline")
    valid = tokenize_split(corpus["validation"], tokenizer)
    data = {
        "tokenizer": tokenizer,
        "train": tokenize_split(corpus["train"], tokenizer),
        "valid": valid[: 64 * 256] if args.tiny else valid,
        "vocab": ordinary_tokens(tokenizer),
        "nbytes": evaluate.token_byte_lengths(tokenizer),
    }
    results = {}
    for name in names:
        print(f"{name}: {args.steps} steps", flush=True)
        results[name] = run_variant(name, args, data)
        r = results[name]
        print(
            f"{name}: copy {r['copy']}, {r['val_bits_per_byte']:.3f} bits/byte, "
            f"{r['tokens_per_second']} tokens/s",
            flush=True,
        )
    record = {
        **provenance(
            " ".join(["python", "scripts/teacher_rope_probe.py", *(argv or sys.argv[1:])])
        ),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "vocab": VOCAB,
        "variants": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
