"""Can the cpu chain's all-Hyena student learn to copy at all? (issue 20: the all-Hyena student's
copy accuracy, measured and explained)

The all-Hyena students of `distill_cpu.json` copy and recall nothing (0.000, `evaluation_cpu.json`)
although a quarter of their training rows were copy and associative-recall sequences, while the
hybrid that keeps layer 3's attention copies 0.94. Here both students of that run train further
with cross-entropy on recall rows *alone* (`teacher_data.recall_row`: the probes' own formats, as
in the book's mix), in four equal parts, and their copy and MQAR accuracies (the probes of
chapter 8, at the sizes the cpu evaluation uses) are measured before and after each part. The
hybrid is the check that the data and the loop teach copying; the all-Hyena student asks whether
its architecture can learn it from them.

    PYTHONPATH=. python scripts/hyena_copy_capacity.py \
        --json hyena_lite/results/hyena_copy_capacity_cpu.json
    PYTHONPATH=. python scripts/hyena_copy_capacity.py --smoke --json /tmp/capacity.json  # seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

import hyena_lite.models  # noqa: F401  registers the student classes with AutoModelForCausalLM
from hyena_lite import distill, probes, runs
from hyena_lite.paths import artifacts_dir
from hyena_lite.profiles import get_profile
from hyena_lite.provenance import provenance
from hyena_lite.teacher_data import MixedSetup

# the students of distill_cpu.json and its hybrid (chapter 7's committed comparison)
STUDENTS = {
    "all-Hyena (best)": "distill/cpu-recall0.25/best/student",
    "hybrid (layer 3 attention)": "distill/cpu-hyena0_1_2-recall0.25/best/student",
}
COPY_LENGTHS, MQAR_PAIRS = (4, 8, 16, 32), (2, 4, 8, 16)  # as evaluation_cpu.json probes them
PARTS = 4


def recall_scores(model: torch.nn.Module, tokenizer, n: int) -> dict[str, float]:
    """Mean copy and MQAR accuracy over the probed sizes (n sequences each, seed 0)."""
    model.eval()
    copy = probes.copy_curve(model, tokenizer, COPY_LENGTHS, n=n)
    mqar = probes.mqar_curve(model, tokenizer, MQAR_PAIRS, n=n)
    return {
        "copy": sum(p["accuracy"] for p in copy) / len(copy),
        "mqar": sum(p["accuracy"] for p in mqar) / len(mqar),
    }


def train_on_recall(
    model: torch.nn.Module, setup: MixedSetup, tokens: int, n: int, label: str
) -> list[dict]:
    """Cross-entropy on recall rows alone, in PARTS equal parts (each with its own warm-up and
    decay, on the next stretch of the same stream); the scores before and after each part, and
    each part's training loss (the mean over its last tenth of steps)."""
    curve = [{"tokens": 0, **recall_scores(model, setup.tokenizer, n)}]
    print(f"{label}: {curve[-1]}", flush=True)
    steps = setup.steps_for(tokens // PARTS)
    for part in range(PARTS):
        model.train()
        (run,) = distill.run_stage(
            "ce", model, setup, tokens // PARTS, f"{label}-{part}", offset=part * steps
        )
        last = run.losses[-max(1, len(run.losses) // 10) :]  # the part's last tenth of steps
        curve.append(
            {
                "tokens": (part + 1) * steps * setup.config.tokens_per_step,
                "train_loss": sum(last) / len(last),
                **recall_scores(model, setup.tokenizer, n),
            }
        )
        print(f"{label}: {curve[-1]}", flush=True)
    return curve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="the results file to write")
    parser.add_argument("--tokens", type=int, default=1_048_576, help="training tokens a model")
    parser.add_argument("--n", type=int, default=32, help="probe sequences per size")
    parser.add_argument("--smoke", action="store_true", help="the smoke profile's chain, seconds")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "scripts/hyena_copy_capacity.py", *sys.argv[1:]])
    profile = get_profile("smoke" if args.smoke else "cpu")
    base = distill.make_setup(profile, progress=False)
    setup = MixedSetup.from_setup(base, recall_fraction=1.0)
    clock, report = time.perf_counter(), {}
    for label, folder in STUDENTS.items():
        path = artifacts_dir() / folder
        if args.smoke:  # the smoke chain has no committed run: a converted student stands in
            layers = None if label.startswith("all") else [0]
            model = distill.make_student(dataclasses.replace(setup, hyena_layers=layers), "teacher")
        elif not (path / "config.json").is_file():
            raise SystemExit(
                f"{path} is missing: make it with the commands of distill_cpu.json's `command` "
                "and README's hybrid row (python -m hyena_lite distill --profile cpu ...)"
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(path)
        tokens = 4 * PARTS * setup.config.tokens_per_step if args.smoke else args.tokens
        report[label] = {
            "from": folder,
            "curve": train_on_recall(model, setup, tokens, args.n, label),
        }
    result = {
        **provenance(command),
        "profile": profile.name,
        "data": "teacher_data.recall_row alone (copy and associative-recall sequences of random "
        "sizes, the book's recall rows), cross-entropy, the distillation learning rate",
        "probes": {"copy_lengths": COPY_LENGTHS, "mqar_pairs": MQAR_PAIRS, "n": args.n},
        "models": report,
        "seconds": time.perf_counter() - clock,
    }
    runs.write_json(Path(args.json), result)
    print(f"wrote {args.json} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
