"""The `lm-eval` command: lm-evaluation-harness on the offline last-word task
(hyena_lite.lm_eval_task) for saved models (teachers or students) or teachers by name."""

from __future__ import annotations

import argparse
import tempfile

from hyena_lite import lm_eval_task, runs
from hyena_lite.experiments.evaluate import add_models_argument
from hyena_lite.profiles import get_profile
from hyena_lite.provenance import command_line, provenance

TASKS = (lm_eval_task.TASK, lm_eval_task.TASK_GEN)


def cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m hyena_lite lm-eval`."""
    add_models_argument(parser)
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    parser.add_argument("--limit", type=int, default=100, help="passages per task (0: all 300)")
    parser.add_argument("--batch-size", type=int, default=8, help="requests per forward pass")
    parser.add_argument(
        "--profile", default=None, help="smoke, cpu or gpu (default: $HYENA_BOOK_PROFILE)"
    )
    parser.add_argument("--json", metavar="FILE", help="write the results here (-: stdout)")


def cli_main(args: argparse.Namespace) -> int:
    """Score every --model with lm_eval; print one line per task and metric; write --json."""
    from hyena_lite.experiments.evaluate import load_model

    profile = get_profile(args.profile)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    command = command_line(["python", "-m", "hyena_lite", "lm-eval"], vars(args), True)
    results = {"meta": {**provenance(command), "profile": profile.name}, "models": {}}
    with tempfile.TemporaryDirectory() as folder:
        lm_eval_task.write_task(folder)
        for spec in args.model:
            label, _, where = spec.rpartition("=")
            model, tokenizer = load_model(where, profile)
            scores = lm_eval_task.evaluate_lm(
                model, tokenizer, folder, tasks, args.limit or None, args.batch_size
            )
            results["models"][label or where] = scores
            for line in lm_eval_task.table(scores):
                print(f"{label or where}: {line}")
    if args.json:
        print(f"wrote {runs.write_json(args.json, results)}")
    return 0
