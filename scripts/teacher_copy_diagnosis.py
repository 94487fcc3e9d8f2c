"""Why the cpu profile's mini GPT-2 teacher cannot copy: small GPT-2s trained on induction data,
scored with the copy probe's sequences (issue 22).

Each variant is a GPT-2 (GPT-2's tokenizer size, 50,257 rows) trained on corpus windows of which a
fraction `copy` is replaced by an induction sequence: [eos, s, s, ...] (a span s repeated, as
hyena_lite.mini_teacher builds them) or, with `two_copies`, [eos, s, s, corpus...] (as the copy
probe builds them). A fraction `rand` of the spans are random distinct tokens, drawn from the
whole vocabulary or, with `sub`, from a fixed subset of `sub` tokens or, with `top`, from the
`top` most frequent tokens of the train split (the pool). Training is the library's
recipe (AdamW, betas 0.9/0.95, warm-up then cosine to lr/10, clipping at 1), written out here so
that the script needs only torch and transformers on a GPU machine. Scored: copy accuracy at the
probe length (hyena_lite.probes.copy_batch's sequences, greedy, r_2..r_L of the second copy) over
the whole vocabulary, the corpus's tokens and the pool (also at lengths 32, 64 and 128); validation
loss by position.

    # here, with the offline assets built: the corpus as token tensors
    python scripts/teacher_copy_diagnosis.py prepare --dir .carry/diag
    # here: how alike the cached cpu teacher's embeddings of absent and present tokens are
    python scripts/teacher_copy_diagnosis.py embeddings --dir .carry/diag
    # on a GPU (or CPU, slowly): the variants of a JSON file {name: {field: value}}
    python scripts/teacher_copy_diagnosis.py run --dir .carry/diag --variants V.json --out R.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

VOCAB, EOS = 50257, 50256  # GPT-2's tokenizer; every id below EOS is an ordinary token
DEFAULTS: dict[str, Any] = {
    "copy": 0.0,  # fraction of sequences replaced by induction sequences
    "rand": 0.0,  # fraction of induction spans that are random tokens (else corpus spans)
    "sub": EOS,  # random tokens come from the first `sub` tokens of a fixed permutation
    "top": 0,  # >0: random tokens come from the `top` most frequent tokens of the train split
    "two_copies": 0,  # 1: [eos, s, s, corpus...] as the probe; 0: [eos, s, s, s, ...]
    "min_span": 4,
    "max_span": None,  # None: (seq - 1) // 2 with two_copies, seq // 2 without
    "seq": 256,
    "batch": 16,
    "tokens": 700_000,
    "lr": 2e-3,
    "wd": 0.1,
    "eps": 1e-8,
    "width": 128,
    "layers": 4,
    "heads": 4,
    "init": 0.02,  # GPT-2's initializer_range
    "tie": 1,  # tied input and output embeddings, as GPT-2
    "sin": 0.0,  # >0: position table initialised to sinusoids of this amplitude
    "fp32": 0,  # 1: float32; 0: bf16 autocast
    "probe_len": 64,
    "history_lens": [64],  # copy lengths scored on the pool at 8 points of training
    "history_n": 64,  # probe sequences per length at those points
}


def prepare(folder: Path) -> None:
    """Write the offline corpus's train and validation tokens (GPT-2 tokenizer) as int32
    tensors."""
    from hyena_lite.data import gpt2_tokenizer, load_corpus, tokenize_split

    tokenizer, corpus = gpt2_tokenizer(), load_corpus("offline")
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation"):
        tokens = tokenize_split(corpus[split], tokenizer).to(torch.int32)
        torch.save(tokens, folder / f"{split}.pt")


def embedding_similarity(folder: Path, model_dir: Path | None = None) -> dict[str, Any]:
    """A mini teacher's (model_dir, default the cpu profile's cached one) mean norm and mean
    pairwise cosine of the embedding rows of tokens absent from the training corpus and of
    tokens seen over 100 times (2,000 of each)."""
    from hyena_lite.mini_teacher import mini_gpt2_dir
    from hyena_lite.profiles import get_profile

    # the cpu teacher this diagnosis studied: GPT-2's whole vocabulary, tied, 700K tokens
    studied = get_profile("cpu").replace(teacher_vocab=0, teacher_tied=True, teacher_tokens=700_000)
    model_dir = model_dir or mini_gpt2_dir(studied) / "model"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no cpu teacher at {model_dir}: pre-train it first")
    rows = GPT2LMHeadModel.from_pretrained(model_dir).transformer.wte.weight.detach()
    counts = torch.bincount(torch.load(folder / "train.pt").long(), minlength=VOCAB)
    out: dict[str, Any] = {"teacher": model_dir.parent.name}
    for name, mask in (("absent", counts == 0), ("over_100", counts > 100)):
        chosen = rows[mask][:2000]
        unit = chosen / chosen.norm(dim=1, keepdim=True)
        cosines = (unit @ unit.T)[~torch.eye(len(chosen), dtype=torch.bool)]
        out[name] = {
            "tokens": int(mask.sum()),
            "mean_norm": round(float(chosen.norm(dim=1).mean()), 4),
            "mean_pairwise_cosine": round(float(cosines.mean()), 4),
        }
    return out


def copy_ids(vocab: torch.Tensor, length: int, n: int, seed: int = 0) -> torch.Tensor:
    """n probe sequences [eos, r_1..r_L, r_1..r_L] of distinct random tokens of vocab
    (the draws of hyena_lite.probes.copy_batch)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.stack(
        [vocab[torch.randperm(len(vocab), generator=generator)[:length]] for _ in range(n)]
    )
    return torch.cat([torch.full((n, 1), EOS), rows, rows], 1)


@torch.no_grad()
def copy_accuracy(model: GPT2LMHeadModel, vocab: torch.Tensor, length: int, n: int = 64) -> float:
    """The fraction of r_2..r_L of the second copy predicted greedily (the copy probe's score);
    only the second copy's logits are computed."""
    device = next(model.parameters()).device
    ids = copy_ids(vocab, length, n).to(device)
    with torch.autocast(device.type, torch.bfloat16):
        logits = model(input_ids=ids, logits_to_keep=length + 1).logits
    predicted = logits[:, 1:-1].argmax(-1)  # at positions L+1..2L-1: r_2..r_L of the copy
    return float((predicted == ids[:, length + 2 :]).float().mean())


@torch.no_grad()
def validation(model: GPT2LMHeadModel, tokens: torch.Tensor, seq: int) -> tuple[float, list]:
    """Mean validation NLL over windows of seq tokens (at most 20,000 tokens), and its mean per
    bin of positions [0,2), [2,4), [4,8), ... up to seq - 1."""
    device = next(model.parameters()).device
    n = min(len(tokens), 20_000) // seq
    windows = tokens[: n * seq].view(n, seq).long().to(device)
    nll = []
    for i in range(0, n, 32):
        x = windows[i : i + 32]
        with torch.autocast(device.type, torch.bfloat16):
            logits = model(input_ids=x).logits.float()
        nll.append(
            torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2), x[:, 1:], reduction="none"
            )
        )
    by_position = torch.cat(nll).mean(0)
    edges = [0, *(2**k for k in range(1, int(math.log2(seq - 1)) + 1) if 2**k < seq - 1), seq - 1]
    pairs = zip(edges, edges[1:], strict=False)
    bins = [round(float(by_position[a:b].mean()), 3) for a, b in pairs]
    return float(by_position.mean()), bins


def token_pool(train: torch.Tensor, v: dict[str, Any]) -> torch.Tensor:
    """The tokens that random spans and the pool's copy probe draw from: the v["top"] most
    frequent ordinary tokens of the train split, else the first v["sub"] of a fixed permutation."""
    if v["top"]:
        counts = torch.bincount(train.long(), minlength=VOCAB)[:EOS]
        return torch.argsort(counts, descending=True, stable=True)[: v["top"]]
    return torch.randperm(EOS, generator=torch.Generator().manual_seed(7))[: v["sub"]]


def induction_sequence(
    rng: np.random.Generator, train: torch.Tensor, pool: torch.Tensor, v: dict[str, Any]
) -> torch.Tensor:
    """One induction sequence of v["seq"] tokens, random spans drawn from pool, as the docstring
    at the top says."""
    seq = v["seq"]
    top = v["max_span"] or ((seq - 1) // 2 if v["two_copies"] else seq // 2)
    length = int(rng.integers(v["min_span"], top + 1))
    if rng.random() < v["rand"]:
        picks = rng.choice(len(pool), size=min(length, len(pool)), replace=False)
        span = pool[torch.from_numpy(picks).long()]
    else:
        offset = int(rng.integers(0, len(train) - length))
        span = train[offset : offset + length].long()
    start = torch.tensor([EOS])
    if v["two_copies"]:
        rest = seq - 1 - 2 * len(span)
        offset = int(rng.integers(0, len(train) - max(rest, 0) - 1))
        return torch.cat([start, span, span, train[offset : offset + max(rest, 0)].long()])[:seq]
    return torch.cat([start, span.repeat(-(-(seq - 1) // len(span)))[: seq - 1]])


def build_model(v: dict[str, Any], device: str) -> GPT2LMHeadModel:
    """The variant's GPT-2, seeded; its position table sinusoidal when v["sin"] > 0."""
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=1024,
        n_embd=v["width"],
        n_layer=v["layers"],
        n_head=v["heads"],
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=EOS,
        eos_token_id=EOS,
        initializer_range=v["init"],
        tie_word_embeddings=bool(v["tie"]),
    )
    model = GPT2LMHeadModel(config).to(device)
    model.loss_type = "ForCausalLM"
    if v["sin"]:
        rows, width = model.transformer.wpe.weight.shape
        angle = torch.arange(rows)[:, None] / 10000 ** (torch.arange(0, width, 2) / width)
        table = torch.stack([angle.sin(), angle.cos()], -1).flatten(1) * v["sin"]
        with torch.no_grad():
            model.transformer.wpe.weight.copy_(table)
    return model


def train_and_score(
    changes: dict[str, Any], train: torch.Tensor, valid: torch.Tensor, device: str
) -> dict[str, Any]:
    """Train one variant (the defaults with `changes`) and score it; the copy accuracy over the
    whole vocabulary is also recorded at 8 points of training."""
    unknown = set(changes) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown variant fields {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    v = {**DEFAULTS, **changes}
    corpus_tokens = torch.nonzero(torch.bincount(train.long(), minlength=VOCAB)[:EOS]).flatten()
    subset = token_pool(train, v)
    ordinary = torch.arange(EOS)  # hyena_lite.data.ordinary_tokens of GPT-2's tokenizer
    model = build_model(v, device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": v["wd"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=v["lr"],
        betas=(0.9, 0.95),
        eps=v["eps"],
    )
    steps = v["tokens"] // (v["batch"] * v["seq"])
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    history, start = [], time.perf_counter()
    train_seconds = 0.0
    for step in range(steps):
        rng = np.random.default_rng([0, step])
        offsets = torch.from_numpy(rng.integers(0, len(train) - v["seq"] + 1, size=v["batch"]))
        batch = train[offsets[:, None] + torch.arange(v["seq"])].long()
        mix = np.random.default_rng([0, step, 1])
        for row in np.flatnonzero(mix.random(v["batch"]) < v["copy"]):
            batch[row] = induction_sequence(mix, train, subset, v)
        batch = batch.to(device)
        with torch.autocast(device, torch.bfloat16, enabled=not v["fp32"]):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % max(1, steps // 8) == 0:
            train_seconds = time.perf_counter() - start
            model.eval()
            point = {"step": step + 1, "train_loss": round(loss.item(), 3)}
            point["seconds"] = round(time.perf_counter() - start, 1)
            point["copy_all"] = copy_accuracy(model, ordinary, v["probe_len"], v["history_n"])
            for length in v["history_lens"]:
                point[f"copy_subset_{length}"] = copy_accuracy(
                    model, subset, length, v["history_n"]
                )
            history.append(point)
            print(json.dumps(point), file=sys.stderr, flush=True)
            model.train()
            start = time.perf_counter() - train_seconds  # scoring does not count as training
    model.eval()
    val_loss, bins = validation(model, valid, v["seq"])
    return {
        "changes": changes,
        "steps": steps,
        "seconds": round(time.perf_counter() - start, 1),  # training only, without scoring
        "val_loss": round(val_loss, 3),
        "val_nll_by_position_bin": bins,
        "copy_all": copy_accuracy(model, ordinary, v["probe_len"]),
        "copy_corpus_tokens": copy_accuracy(model, corpus_tokens, v["probe_len"]),
        "copy_subset": copy_accuracy(model, subset, v["probe_len"]),
        "copy_subset_by_length": {
            str(length): copy_accuracy(model, subset, length)
            for length in (32, 64, 128)
            if length <= len(subset)
        },
        "history": history,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("prepare", "embeddings", "run"))
    parser.add_argument("--dir", type=Path, required=True, help="the token tensors' folder")
    parser.add_argument("--variants", type=Path, help="JSON {name: {field: value}} (run)")
    parser.add_argument("--teacher", type=Path, help="a teacher's model folder (embeddings)")
    parser.add_argument("--out", type=Path, help="the JSON report, rewritten after each variant")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.mode == "prepare":
        prepare(args.dir)
        return 0
    if args.mode == "embeddings":
        print(json.dumps(embedding_similarity(args.dir, args.teacher), indent=1))
        return 0
    if not (args.variants and args.out):
        parser.error("run needs --variants and --out")
    train = torch.load(args.dir / "train.pt")
    valid = torch.load(args.dir / "validation.pt")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {}
    for name, changes in json.loads(args.variants.read_text()).items():
        report[name] = train_and_score(changes, train, valid, device)
        print(name, json.dumps(report[name]), flush=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
