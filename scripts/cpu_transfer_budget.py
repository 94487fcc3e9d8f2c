"""Does a longer attention transfer make the KD tokens teach more? (issue 20 at the cpu scale)

`alignment_budget_cpu.json` found SmolLM2's transfer stage short of steps: single mixers aligned
ten times longer miss a third or less of their attention layers' output, against 0.35 to 0.70
after the recipe's steps. Here the cpu chain asks what that buys the whole student: the book's
all-Hyena student on the book's mix (a quarter copy / recall rows) with the `transfer` recipe as it
is (a quarter of the budget aligns every mixer at once, the rest is KD) and with the transfer given
`--transfer-factor` times its tokens (the KD stage unchanged), the recipe's own split of that
arm's total tokens (the same tokens, a quarter transfer), beside the `best` recipe
(progressive alignment) and the control (the teacher fine-tuned with cross-entropy on the same
tokens), all scored as cpu_mix_probe.py scores them. One JSON file with command, commit, hardware.

    PYTHONPATH=. python scripts/cpu_transfer_budget.py \
        --json hyena_lite/results/cpu_transfer_budget.json
    PYTHONPATH=. python scripts/cpu_transfer_budget.py --smoke --json /tmp/transfer.json  # seconds
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from cpu_mix_probe import score, score_recipe_run, write_final  # this folder's probe: its scores

from hyena_lite import book_students, distill, runs
from hyena_lite.control import fine_tuned_teacher
from hyena_lite.profiles import get_profile
from hyena_lite.provenance import provenance
from hyena_lite.teacher_data import MixedSetup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="the results file to write")
    parser.add_argument("--tokens", type=int, default=1_048_576, help="tokens per model")
    parser.add_argument("--transfer-factor", type=int, default=4)
    parser.add_argument(
        "--eval-tokens", type=int, default=20_000, help="tokens scored per text (0: all)"
    )
    parser.add_argument("--smoke", action="store_true", help="the smoke profile, in seconds")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "scripts/cpu_transfer_budget.py", *sys.argv[1:]])
    profile = get_profile("smoke" if args.smoke else "cpu")
    base = distill.make_setup(profile, progress=False)
    setup = MixedSetup.from_setup(base, recall_fraction=book_students.RECALL_FRACTION)
    tokens = 4 * setup.config.tokens_per_step if args.smoke else args.tokens
    longer = args.transfer_factor * (tokens // 4)
    clock = time.perf_counter()
    report = {
        **provenance(command),
        "profile": profile.name,
        "tokens_per_model": tokens,
        "transfer_tokens_longer": longer,
        "data_mix": setup.data_mix(),
        "eval_tokens_per_text": args.eval_tokens,
        "teacher": score(base.teacher, profile, base.tokenizer, args.eval_tokens),
        "models": {},
    }
    arms = {
        "best (progressive)": lambda: distill.run_recipe("best", setup, tokens),
        "transfer": lambda: distill.run_recipe("transfer", setup, tokens),
        "transfer, longer": lambda: distill.run_recipe(
            "transfer", setup, tokens, stage_tokens={"transfer": longer}
        ),
        # the recipe's own split of the longer arm's total: are the extra tokens better spent on
        # the transfer than on KD?
        "transfer, same total": lambda: distill.run_recipe(
            "transfer", setup, tokens // 4 * 3 + longer
        ),
    }
    control = score(fine_tuned_teacher(setup, tokens)[0], profile, base.tokenizer, args.eval_tokens)
    report["models"]["teacher_ft"] = control
    for label, train in arms.items():
        run = train()
        scores = score_recipe_run(run, profile, base.tokenizer, args.eval_tokens, control)
        report["models"][label] = scores
        runs.write_json(Path(args.json), report)
        print(f"{label}: x fine-tuned teacher in domain {scores['over_teacher_ft_in']:.3f}")
    return write_final(report, args.json, clock)


if __name__ == "__main__":
    sys.exit(main())
