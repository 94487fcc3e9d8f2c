"""Does the all-Hyena student close on the fine-tuned teacher with more tokens? (issue 20 at the
cpu scale: all-Hyena <= 1.3x the fine-tuned teacher in domain)

At 500,000 tokens (`evaluation_cpu.json`) the all-Hyena student is 1.34 times the control (the
teacher fine-tuned with cross-entropy on the same batches) in domain. Here the book's all-Hyena
student (`best` recipe) and the control train on the book's mix (a quarter copy / recall rows)
at each budget, on the same stream, and both are scored as cpu_mix_probe.py scores them: in
domain and out of domain, sliding windows, token-weighted.

    PYTHONPATH=. python scripts/cpu_token_scaling.py --budgets 1048576,2097152 \
        --json hyena_lite/results/cpu_token_scaling.json
    PYTHONPATH=. python scripts/cpu_token_scaling.py --smoke --json /tmp/scaling.json  # seconds
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from cpu_mix_probe import score, write_final  # this folder's probe: the same scores as its results

from hyena_lite import book_students, distill
from hyena_lite.control import fine_tuned_teacher
from hyena_lite.profiles import get_profile
from hyena_lite.provenance import provenance
from hyena_lite.teacher_data import MixedSetup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="the results file to write")
    parser.add_argument(
        "--budgets", default="1048576,2097152", help="comma-separated tokens per model"
    )
    parser.add_argument(
        "--eval-tokens", type=int, default=20_000, help="tokens scored per text (0: all)"
    )
    parser.add_argument("--smoke", action="store_true", help="the smoke profile, in seconds")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "scripts/cpu_token_scaling.py", *sys.argv[1:]])
    profile = get_profile("smoke" if args.smoke else "cpu")
    base = distill.make_setup(profile, progress=False)
    setup = MixedSetup.from_setup(base, recall_fraction=book_students.RECALL_FRACTION)
    budgets = [int(b) for b in args.budgets.split(",")]
    if args.smoke:
        budgets = [4 * setup.config.tokens_per_step]
    clock = time.perf_counter()
    report = {
        **provenance(command),
        "profile": profile.name,
        "data_mix": setup.data_mix(),
        "eval_tokens_per_text": args.eval_tokens,
        "teacher": score(base.teacher, profile, base.tokenizer, args.eval_tokens),
        "budgets": {},
    }
    for tokens in budgets:
        models = {
            "distilled": distill.run_recipe("best", setup, tokens).student.eval(),
            "teacher_ft": fine_tuned_teacher(setup, tokens)[0],
        }
        scores = {
            label: score(m, profile, base.tokenizer, args.eval_tokens)
            for label, m in models.items()
        }
        ratio = scores["distilled"]["in_domain"]["ppl"] / scores["teacher_ft"]["in_domain"]["ppl"]
        report["budgets"][str(tokens)] = {"models": scores, "distilled_over_teacher_ft_in": ratio}
        print(
            f"{tokens:,} tokens: all-Hyena / fine-tuned teacher in domain {ratio:.3f}", flush=True
        )
    return write_final(report, args.json, clock)


if __name__ == "__main__":
    sys.exit(main())
