"""Do the long filters' settings change what a whole student learns? (issue 20 at the cpu scale)

`mixer_capacity_cpu.json` aligned single SmolLM2 mixers with variants of the Hyena operator: more
positional bands of the filter network, filters cut to (or decaying within) the context the runs
train on instead of the teacher's whole position table, the Hyena paper's language-model settings.
This script asks whether what helps one mixer helps a whole student: the book's all-Hyena student
on the book's mix (the `transfer` recipe, a quarter copy / recall rows) once per filter setting,
on the same tokens and seed, against the teacher fine-tuned with cross-entropy on the same tokens,
scored as cpu_mix_probe.py scores. One JSON file with command, commit, hardware.

    PYTHONPATH=. python scripts/cpu_filter_settings.py \
        --json hyena_lite/results/cpu_filter_settings.json
    PYTHONPATH=. python scripts/cpu_filter_settings.py --smoke --json /tmp/filters.json  # seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from cpu_mix_probe import score, score_recipe_run, write_final  # this folder's probe: its scores

from hyena_lite import book_students, distill, runs
from hyena_lite.control import fine_tuned_teacher
from hyena_lite.operator import decay_within
from hyena_lite.profiles import get_profile
from hyena_lite.provenance import provenance
from hyena_lite.teacher_data import MixedSetup


def variants(l_max: int, context: int) -> dict[str, dict[str, Any]]:
    """Hyena settings of each arm (convert's keyword arguments) for filters of `l_max` taps in a
    student trained on `context` tokens, each over one positional band (`emb_dim` 3: the library's
    default when these arms were run; "recipe" is that default)."""
    within = decay_within(context, l_max)
    arms = {
        "recipe": {},
        "bands_16": {"emb_dim": 33},
        "l_max_context": {"l_max": context},
        "decay_within_context": within,
        "bands_16_l_max_context": {"emb_dim": 33, "l_max": context},
        "bands_16_decay_within_context": {"emb_dim": 33, **within},
        # the Hyena paper's language models (safari's configs/experiment/pile/hyena.yaml)
        "hyena_lm": {"emb_dim": 33, "w": 14.0},
        "hyena_lm_l_max_context": {"emb_dim": 33, "w": 14.0, "l_max": context},
    }
    return {name: {"emb_dim": 3} | settings for name, settings in arms.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="the results file to write")
    parser.add_argument("--tokens", type=int, default=1_048_576, help="tokens per model")
    parser.add_argument("--variants", default="", help="comma-separated arms (default: all)")
    parser.add_argument(
        "--eval-tokens", type=int, default=20_000, help="tokens scored per text (0: all)"
    )
    parser.add_argument("--smoke", action="store_true", help="the smoke profile, in seconds")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "scripts/cpu_filter_settings.py", *sys.argv[1:]])
    profile = get_profile("smoke" if args.smoke else "cpu")
    base = distill.make_setup(profile, progress=False)
    setup = MixedSetup.from_setup(base, recall_fraction=book_students.RECALL_FRACTION)
    tokens = 4 * setup.config.tokens_per_step if args.smoke else args.tokens
    l_max = base.teacher.config.max_position_embeddings  # a student's default filter length
    arms = variants(l_max, profile.seq_len)
    chosen = args.variants.split(",") if args.variants else list(arms)
    unknown = [name for name in chosen if name not in arms]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose among {', '.join(arms)}")
    clock = time.perf_counter()
    report = {
        **provenance(command),
        "profile": profile.name,
        "tokens_per_model": tokens,
        "filter_taps": l_max,
        "context": profile.seq_len,
        "data_mix": setup.data_mix(),
        "eval_tokens_per_text": args.eval_tokens,
        "teacher": score(base.teacher, profile, base.tokenizer, args.eval_tokens),
        "models": {},
    }
    control = score(fine_tuned_teacher(setup, tokens)[0], profile, base.tokenizer, args.eval_tokens)
    report["models"]["teacher_ft"] = control
    for name in chosen:
        arm_setup = dataclasses.replace(setup, hyena_kwargs=arms[name])
        run = distill.run_recipe("transfer", arm_setup, tokens)
        scores = score_recipe_run(run, profile, base.tokenizer, args.eval_tokens, control)
        scores["hyena"] = arms[name]
        report["models"][name] = scores
        runs.write_json(Path(args.json), report)
        print(f"{name}: x fine-tuned teacher in domain {scores['over_teacher_ft_in']:.3f}")
    return write_final(report, args.json, clock)


if __name__ == "__main__":
    sys.exit(main())
