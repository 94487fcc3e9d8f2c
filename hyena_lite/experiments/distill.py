"""The `distill` command: one stage, one recipe, or every recipe compared on the same tokens; and
the GPU throughput (tokens per second, MFU) of each stage.

Chapter 7 shows the comparison (results/distill_cpu.json) and the GPU throughput
(results/distill_gpu.json).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from hyena_lite import distill
from hyena_lite.control import fine_tuned_teacher
from hyena_lite.losses import validation_loss
from hyena_lite.provenance import provenance
from hyena_lite.teacher_data import MixedSetup
from hyena_lite.training import COMPILE_MODES, TrainConfig


def compare(
    setup: distill.Setup,
    tokens: int,
    recipes: tuple[str, ...] = ("paper", "best", "transfer", "ce", "scratch"),
) -> dict:
    """Train one student per recipe on the same `tokens` tokens and measure them against the
    teacher and the control, the teacher fine-tuned with cross-entropy on the same batches
    (book_students.CONTROL, "teacher_ft").

    The summary has teacher_ppl, RECIPE_ppl for each recipe (and teacher_ft_ppl), distilled_ppl
    (the best recipe's), tokens (per student), wall_seconds (per student and stage) and each
    student's details.
    """
    from hyena_lite.book_students import CONTROL, CONTROL_SPEC

    students = {}
    for recipe in recipes:
        run = distill.run_recipe(recipe, setup, tokens)
        students[recipe] = distill.summarize(recipe, run, setup)
        _save(run.student, setup, recipe)
    model, result = fine_tuned_teacher(setup, tokens, CONTROL_SPEC["lr_scale"], CONTROL)
    run = distill.RecipeRun(model, {"ce": [result]}, {})
    students[CONTROL] = {"recipe": CONTROL_SPEC, **distill.summarize_run(run, setup)}
    _save(model, setup, CONTROL)
    tokens_seen = {name: s["tokens"] for name, s in students.items()}
    step_tokens = setup.config.tokens_per_step
    if max(tokens_seen.values()) - min(tokens_seen.values()) >= step_tokens * max(
        len(distill.RECIPES[r]["stages"]) for r in recipes
    ):
        # each stage's share of the budget is rounded down to whole steps: up to one step per stage
        # apart
        raise RuntimeError(f"the students saw different numbers of tokens: {tokens_seen}")
    report = {
        "teacher_ppl": math.exp(validation_loss(setup.teacher, setup.valid_windows)),
        **{f"{name}_ppl": s["val_ppl"] for name, s in students.items()},
    }
    if "best" in students:
        report["distilled_recipe"], report["distilled_ppl"] = "best", students["best"]["val_ppl"]
    report.update(
        tokens=max(tokens_seen.values()),
        tokens_per_student=tokens_seen,
        wall_seconds={name: s["wall_seconds"] for name, s in students.items()},
        students=students,
    )
    return report


def _save(model: nn.Module, setup: distill.Setup, name: str) -> None:
    """Save a trained model and the tokenizer to OUT_DIR/NAME/student, where the setup has one."""
    if setup.config.out_dir:
        folder = f"{setup.config.out_dir}/{name}/student"
        model.save_pretrained(folder)
        setup.tokenizer.save_pretrained(folder)


def matmul_flops_per_token(model: nn.Module, seq_len: int, attention_layers: int = 0) -> float:
    """Forward FLOPs per token in matrix products: 2 x the weights used per token (the head once, no
    position table) plus 4 x seq_len x width per attention layer (scores and weighted sum); FFTs are
    not counted."""
    weights = sum(
        p.numel()
        for n, p in model.named_parameters()
        if p.ndim >= 2 and "wpe" not in n and "filter_fn" not in n
    )
    return 2.0 * weights + 4.0 * seq_len * model.config.hidden_size * attention_layers


def throughput(
    teacher: nn.Module, stage: str, config: TrainConfig, skip: int = 5
) -> dict[str, float]:
    """Tokens per second and model FLOPs per second of `stage` ("kd", "ce" or "teacher": the teacher
    itself trained with cross-entropy, for comparison) on random tokens, after `skip` warm-up
    steps."""
    from hyena_lite.models import convert

    vocab = teacher.config.vocab_size

    def batches_fn(start: int):
        g = torch.Generator().manual_seed(start)
        while True:
            yield torch.randint(0, vocab, (config.batch_size, config.seq_len), generator=g)

    torch.manual_seed(config.seed)
    layers = teacher.config.num_hidden_layers
    if stage == "teacher":
        model = type(teacher)(teacher.config)
        result = distill.ce(model, batches_fn, config)
        flops = 3 * matmul_flops_per_token(model, config.seq_len, layers)
    else:
        model = convert(teacher, init="teacher")
        result = (
            distill.kd(model, teacher, batches_fn, config, ce_weight=0.5)
            if stage == "kd"
            else distill.ce(model, batches_fn, config)
        )
        flops = 3 * matmul_flops_per_token(model, config.seq_len)
        if stage == "kd":
            flops += matmul_flops_per_token(
                teacher, config.seq_len, layers
            )  # the teacher's forward pass
    timed = result.records[skip:]
    seconds = timed[-1]["wall_seconds"] - result.records[skip - 1]["wall_seconds"]
    tokens = timed[-1]["tokens"] - result.records[skip - 1]["tokens"]
    return {
        "tokens_per_second": tokens / seconds,
        "model_flops_per_token": flops,
        "model_tflops_per_second": flops * tokens / seconds / 1e12,
        "timed_steps": len(timed),
        "final_loss": result.losses[-1],
    }


def matmul_ceiling(size: int = 8192, repeats: int = 10) -> float:
    """Measured TFLOP/s of a bf16 [size x size] matrix product on the current GPU (the MFU
    denominator)."""
    a, b = (torch.randn(size, size, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (start.elapsed_time(end) / 1e3) / 1e12


def gpu_throughput(steps: int = 30, batch_size: int = 16, seq_len: int = 1024) -> dict[str, Any]:
    """KD, CE and teacher training speed at GPT-2 124M shape (random weights) on one GPU, in bf16,
    with MFU."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if not torch.cuda.is_available():
        raise RuntimeError("gpu_throughput needs a CUDA GPU; none is visible here")
    torch.manual_seed(0)
    teacher = distill.freeze(GPT2LMHeadModel(GPT2Config(n_positions=seq_len)))
    config = TrainConfig(
        steps=steps, lr=6e-4, warmup=2, batch_size=batch_size, seq_len=seq_len, progress=False
    )
    ceiling = matmul_ceiling()
    report = {
        "shape": "GPT-2 124M (12 layers, width 768, 12 heads, vocab 50257), random weights",
        "batch_size": batch_size,
        "seq_len": seq_len,
        "steps": steps,
        "precision": "bf16 autocast",
        "measured_bf16_matmul_tflops": ceiling,
        "datasheet_bf16_dense_tflops": 989.0,
        "stages": {},
    }
    for stage in ("kd", "ce", "teacher"):
        row = throughput(teacher, stage, config)
        row["mfu_vs_measured_matmul"] = row["model_tflops_per_second"] / ceiling
        row["mfu_vs_datasheet"] = row["model_tflops_per_second"] / 989.0
        report["stages"][stage] = row
        print(
            f"{stage:>8}: {row['tokens_per_second']:,.0f} tokens/s, "
            f"{row['model_tflops_per_second']:.1f} TFLOP/s, "
            f"MFU {row['mfu_vs_datasheet']:.1%} of the datasheet, "
            f"{row['mfu_vs_measured_matmul']:.1%} of the "
            f"measured matmul ({ceiling:.0f} TFLOP/s)"
        )
    return report


# ------------------------------------------------------------------------------------------- CLI


def cli_arguments(parser) -> None:
    """Options of `python -m hyena_lite distill`."""
    parser.add_argument(
        "--profile",
        default=None,
        help="smoke, cpu or gpu (default: $HYENA_BOOK_PROFILE, else by hardware)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="the teacher to distil, a name or a folder (default: the profile's)",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--stage", choices=distill.STAGES, help="run one stage on one student")
    what.add_argument(
        "--recipe", choices=sorted(distill.RECIPES), help="run a recipe's stages on its student"
    )
    what.add_argument(
        "--compare",
        action="store_true",
        help="teacher, paper, best, transfer, ce and scratch students on the same tokens; writes "
        "--json",
    )
    what.add_argument(
        "--gpu-throughput",
        action="store_true",
        help="tokens/s and MFU of KD, CE and teacher training at GPT-2 124M shape on a GPU; "
        "writes --json",
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="training tokens per student (default: the profile's)",
    )
    parser.add_argument(
        "--init",
        choices=("teacher", "fresh", "random"),
        default="teacher",
        help="--stage only: the student's initialisation (see hyena_lite.models.convert); "
        "--stage scratch always uses random",
    )
    parser.add_argument(
        "--hyena-layers", default=None, help="comma-separated layers to convert (default: all)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="folder of checkpoints, logs and students (default: artifacts/distill/PROFILE)",
    )
    parser.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="--compare, --gpu-throughput: write the JSON summary here (-: stdout)",
    )
    parser.add_argument(
        "--grad-accum",
        type=int,
        default=None,
        help="split each step's batch into this many micro-batches (less memory, same tokens; "
        "default: the profile's)",
    )
    parser.add_argument(
        "--recall-fraction",
        type=float,
        default=0.0,
        help="share of each batch's rows that are copy and associative-recall sequences "
        "(hyena_lite.teacher_data.recall_row; the book's students use "
        "hyena_lite.book_students.RECALL_FRACTION = 0.25; default 0: the corpus only)",
    )
    parser.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        default="no",
        help="torch.compile of the students and the KD teacher (TrainConfig.compile): 'whole' "
        "trained a SmolLM2-shaped KD step 1.87x faster on an H100, its loss's logit terms "
        "compiled too, after about two minutes of compiling per stage "
        "(hyena_lite/results/kd_logit_terms_ab_h100.json); for long GPU runs",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def default_out(
    profile, teacher: str | None, layers: list[int] | None, recall_fraction: float = 0.0
) -> str:
    """artifacts/distill/PROFILE for the profile's teacher with every layer converted, on the
    corpus alone; each other teacher, choice of layers or data mix gets its own folder beside it,
    so that no run is ever found under another's name."""
    from hyena_lite.paths import artifacts_dir

    folder = artifacts_dir() / "distill" / profile.name
    if teacher not in (None, profile.teacher):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in teacher)
        folder = folder / f"teacher-{safe}"
    if layers is not None:
        folder = folder.with_name(f"{folder.name}-hyena{'_'.join(map(str, layers))}")
    if recall_fraction:
        folder = folder.with_name(f"{folder.name}-recall{recall_fraction:g}")
    return str(folder)


def cli_main(args) -> int:
    """Run the chosen stage, recipe or comparison; print validation perplexities."""
    from hyena_lite import runs
    from hyena_lite.profiles import get_profile

    if args.gpu_throughput:
        command = "python -m hyena_lite distill --gpu-throughput"
        report = {
            **provenance(command + (f" --json {args.json}" if args.json else "")),
            **gpu_throughput(),
        }
        if args.json:
            print(f"wrote {runs.write_json(args.json, report)}")  # atomic (hyena_lite.runs)
        return 0
    profile = get_profile(args.profile)
    tokens = args.tokens or profile.distill_tokens
    layers = None if args.hyena_layers is None else [int(x) for x in args.hyena_layers.split(",")]
    out = args.out or default_out(profile, args.model, layers, args.recall_fraction)
    setup = distill.make_setup(
        profile,
        args.model,
        layers,
        out,
        progress=not args.no_progress,
        grad_accum=args.grad_accum,
        compile=args.compile,
    )
    if args.recall_fraction:
        setup = MixedSetup.from_setup(setup, recall_fraction=args.recall_fraction)
    if args.compare:
        report = compare(setup, tokens)
        teacher = args.model or profile.teacher
        command = (
            f"python -m hyena_lite distill --profile {profile.name} --compare --tokens {tokens} "
            f"--grad-accum {setup.config.grad_accum} --out {out}"
            + (f" --model {args.model}" if args.model else "")
            + (f" --hyena-layers {args.hyena_layers}" if layers is not None else "")
            + (f" --recall-fraction {args.recall_fraction}" if args.recall_fraction else "")
            + (f" --compile {args.compile}" if args.compile != "no" else "")
            + (f" --json {args.json}" if args.json else "")
        )
        report = {
            **provenance(command),
            "teacher": teacher,
            "profile": profile.name,
            "teacher_train_tokens": profile.teacher_tokens if teacher == "mini-gpt2" else None,
            "data_mix": setup.data_mix() if isinstance(setup, MixedSetup) else {"corpus": 1.0},
            **report,
            "total_train_seconds": sum(sum(w.values()) for w in report["wall_seconds"].values()),
        }
        for recipe, student in report["students"].items():
            print(
                f"{recipe:>10}: val ppl {student['val_ppl']:.2f} "
                f"({student['val_ppl'] / report['teacher_ppl']:.2f}x "
                f"the teacher's {report['teacher_ppl']:.2f}), {student['tokens']:,} tokens"
            )
        if args.json:
            print(f"wrote {runs.write_json(args.json, report)}")  # atomic (hyena_lite.runs)
        return 0
    if args.recipe:
        student = distill.run_recipe(args.recipe, setup, tokens).student
        name = args.recipe
    else:
        student = distill.make_student(setup, "random" if args.stage == "scratch" else args.init)
        name = f"stage-{args.stage}-{args.init}"
        distill.run_stage(args.stage, student, setup, tokens, name)
    folder = f"{out}/{name}/student"
    student.save_pretrained(folder)
    setup.tokenizer.save_pretrained(folder)
    ppl = math.exp(validation_loss(student, setup.valid_windows))
    print(f"{name}: validation perplexity {ppl:.2f}; student saved to {folder}")
    return 0
