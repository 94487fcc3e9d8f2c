"""What the teacher's own samples buy the cpu chain (issue 20 at the cpu scale).

The book's all-Hyena (`distilled`) and `hybrid` students and the control (the teacher fine-tuned
with cross-entropy on the same tokens) are trained on the book's mix (corpus, a quarter copy /
recall rows) and on the same mix with half its rows taken from the teacher's own samples, each on
the book's budget; every model is scored in domain (the validation texts) and out of domain
(hyena_lite.evaluate.out_of_domain_texts), sliding windows of the profile's length with half of
it as stride, token-weighted, and on copying. One JSON file with the command, commit and hardware.

    PYTHONPATH=. python scripts/cpu_mix_probe.py --json hyena_lite/results/cpu_mix_probe.json
    PYTHONPATH=. python scripts/cpu_mix_probe.py --smoke --json /tmp/probe.json  # a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from hyena_lite import book_students, distill, evaluate, recall, runs
from hyena_lite.control import fine_tuned_teacher
from hyena_lite.profiles import get_profile
from hyena_lite.provenance import provenance
from hyena_lite.teacher_data import MixedSetup, SampleSettings, load_samples, teacher_samples

STUDENTS = {"distilled": ("best", False), "hybrid": ("best", True)}


def score(model: torch.nn.Module, profile, tokenizer, max_tokens: int) -> dict[str, Any]:
    """In-domain and out-of-domain ppl / bits per byte (token-weighted), and the copy accuracy of
    sequences a quarter of the profile's window long (chapter 8's probe); at most `max_tokens`
    tokens of each text."""
    common = dict(context=profile.seq_len, stride=profile.seq_len // 2, max_tokens=max_tokens)
    inside = evaluate.score_texts(
        model, tokenizer, evaluate.corpus_texts("validation", profile.corpus), **common
    )
    outside = evaluate.score_texts(model, tokenizer, evaluate.out_of_domain_texts(), **common)
    return {
        "in_domain": {"ppl": inside["ppl"], "bpb": inside["bpb"]},
        "out_of_domain": {
            "ppl": outside["ppl"],
            "bpb": outside["bpb"],
            "per_text": {k: v["ppl"] for k, v in outside["texts"].items()},
        },
        "copy_accuracy": recall.copy_accuracy(
            model, tokenizer, lengths=[max(8, profile.seq_len // 4)], n=16
        ),
    }


def score_recipe_run(
    run, profile, tokenizer, max_tokens: int, control: dict[str, Any]
) -> dict[str, Any]:
    """`score` of a recipe's trained student, with its in-domain ratio to the control (the teacher
    fine-tuned on the same tokens, scored alike) and its perplexity after each stage."""
    scores = score(run.student.eval(), profile, tokenizer, max_tokens)
    scores["over_teacher_ft_in"] = scores["in_domain"]["ppl"] / control["in_domain"]["ppl"]
    scores["ppl_after"] = run.ppl_after
    return scores


def write_final(report: dict[str, Any], json_path: str, clock: float) -> int:
    """Write a probe's finished report with its seconds since `clock`; main's exit code."""
    report["seconds"] = time.perf_counter() - clock
    runs.write_json(Path(json_path), report)
    print(f"wrote {json_path} in {report['seconds']:.0f} s")
    return 0


def train_arm(setup: MixedSetup, tokens: int, kept: list[int], n_layers: int) -> dict[str, Any]:
    """The two students and the control on one mix, trained from scratch in a temporary folder."""
    models = {}
    for label, (recipe, hybrid) in STUDENTS.items():
        layers = [i for i in range(n_layers) if i not in kept] if hybrid else None
        own = dataclasses.replace(setup, hyena_layers=layers)
        models[label] = distill.run_recipe(recipe, own, tokens).student.eval()
    models["teacher_ft"], _ = fine_tuned_teacher(setup, tokens)
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="the results file to write")
    parser.add_argument("--smoke", action="store_true", help="the smoke profile, in a minute")
    parser.add_argument("--sample-fraction", type=float, default=0.5)
    parser.add_argument("--sequences", type=int, default=2048, help="teacher samples to draw")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument(
        "--eval-tokens", type=int, default=20_000, help="tokens scored per text (0: all)"
    )
    args = parser.parse_args(argv)
    command = shlex.join(["python", "scripts/cpu_mix_probe.py", *sys.argv[1:]])
    profile = get_profile("smoke" if args.smoke else "cpu")
    clock = time.perf_counter()
    base = distill.make_setup(profile, progress=False)
    tokenizer, tokens = base.tokenizer, book_students.student_tokens(profile)
    induction, kept = book_students.attention_layers_for(base.teacher, tokenizer)
    settings = SampleSettings(
        sequences=16 if args.smoke else args.sequences,
        new_tokens=profile.seq_len - 9,  # the prompt (start token and 8 corpus tokens) included
        temperature=args.temperature,
        top_p=0.95,
        batch_size=256,
    )
    with tempfile.TemporaryDirectory() as folder:
        teacher_samples(base.teacher, tokenizer, base.train_tokens, settings, folder, False)
        samples, stats = load_samples(folder, tokenizer.eos_token_id)
    arms = {
        "book mix": MixedSetup.from_setup(base, recall_fraction=book_students.RECALL_FRACTION),
        "with samples": MixedSetup.from_setup(
            base,
            samples=samples,
            sample_fraction=args.sample_fraction,
            recall_fraction=book_students.RECALL_FRACTION,
        ),
    }
    report: dict[str, Any] = {
        **provenance(command),
        "profile": profile.name,
        "tokens_per_model": tokens,
        "eval_tokens_per_text": args.eval_tokens,
        "hybrid_attention_layers": kept,
        "samples": {"settings": dataclasses.asdict(settings), **stats},
        "teacher": score(base.teacher, profile, tokenizer, args.eval_tokens),
        "arms": {},
    }
    for name, setup in arms.items():
        models = train_arm(setup, tokens, kept, len(induction))
        report["arms"][name] = {
            "data_mix": setup.data_mix(),
            "models": {
                label: score(m, profile, tokenizer, args.eval_tokens) for label, m in models.items()
            },
        }
        scores = report["arms"][name]["models"]
        print(name, {k: round(v["out_of_domain"]["ppl"], 1) for k, v in scores.items()})
    return write_final(report, args.json, clock)


if __name__ == "__main__":
    sys.exit(main())
