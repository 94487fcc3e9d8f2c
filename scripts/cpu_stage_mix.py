"""Does the induction stage cost the in-domain text because its rows hold no corpus? (issue 20 at
the cpu scale)

SmolLM2's runs C, D and G trained their induction stage on run C's mix with the recall share raised
from 0.10 to 0.25 taken from the corpus alone: the stage saw the teacher's samples, the broad text
and recall rows, no corpus, and their in-domain perplexity rose while out of domain fell. The
library now scales every source (`MixedSetup.with_recall`). This probe asks the question on the
cpu chain: the book's hybrid (attention at the teacher's induction layer, 16 bands) on run C's mix
(the cpu teacher's own samples 0.5, the broad text 0.25, recall 0.1, corpus 0.15), the `transfer`
recipe, then from its weights and on the same batches two induction stages (a quarter recall, 3x
the rate, the copy-aware loss): the corpus dropped (as the runs had it) and the corpus kept; each
scored in domain, out of domain and on copying, and the recipe's hybrid before them, as
cpu_mix_probe.py scores. One JSON file with command, commit, hardware.

    PYTHONPATH=. python scripts/cpu_stage_mix.py --json hyena_lite/results/cpu_stage_mix.json
    PYTHONPATH=. python scripts/cpu_stage_mix.py --smoke --json /tmp/stage_mix.json  # a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import tempfile
import time
from typing import Any

from cpu_mix_probe import score, write_final  # this folder's probe: its scores

from hyena_lite import book_students, distill
from hyena_lite.broad_text import broad_tokens
from hyena_lite.profiles import get_profile
from hyena_lite.provenance import provenance
from hyena_lite.teacher_data import MixedSetup, SampleSettings, load_samples, teacher_samples

RUN_C_MIX = {"sample_fraction": 0.5, "broad_fraction": 0.25, "recall_fraction": 0.1}
STAGE_RECALL = 0.25


def stage_setups(setup: MixedSetup) -> dict[str, MixedSetup]:
    """The two stages' rows: the recall share raised with the corpus alone making room (what
    runs C, D and G trained on), and with every source keeping its proportion."""
    corpus_dropped = dataclasses.replace(setup, recall_fraction=STAGE_RECALL)
    return {"corpus_dropped": corpus_dropped, "corpus_kept": setup.with_recall(STAGE_RECALL)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="the results file to write")
    parser.add_argument("--tokens", type=int, default=1_048_576, help="the recipe's tokens")
    parser.add_argument("--stage-tokens", type=int, default=2_097_152, help="each stage's tokens")
    parser.add_argument("--sequences", type=int, default=1024, help="teacher samples to draw")
    parser.add_argument(
        "--eval-tokens", type=int, default=20_000, help="tokens scored per text (0: all)"
    )
    parser.add_argument("--smoke", action="store_true", help="the smoke profile, in a minute")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "scripts/cpu_stage_mix.py", *sys.argv[1:]])
    profile = get_profile("smoke" if args.smoke else "cpu")
    if args.smoke:
        args.tokens, args.stage_tokens, args.sequences = 1024, 1024, 16
    clock = time.perf_counter()
    base = distill.make_setup(profile, progress=False)
    tokenizer = base.tokenizer
    _, kept = book_students.attention_layers_for(base.teacher, tokenizer)
    settings = SampleSettings(
        sequences=args.sequences,
        new_tokens=profile.seq_len - 9,  # the prompt (start token and 8 corpus tokens) included
        temperature=0.8,
        top_p=0.95,
        batch_size=256,
    )
    with tempfile.TemporaryDirectory() as folder:
        teacher_samples(base.teacher, tokenizer, base.train_tokens, settings, folder, False)
        samples, stats = load_samples(folder, tokenizer.eos_token_id)
    layers = base.teacher.config.num_hidden_layers
    hybrid = dataclasses.replace(base, hyena_layers=[i for i in range(layers) if i not in kept])
    setup = MixedSetup.from_setup(
        hybrid, samples=samples, broad=broad_tokens(tokenizer), **RUN_C_MIX
    )
    run = distill.run_recipe("transfer", setup, args.tokens)
    student = run.student
    recipe_weights = {k: v.detach().clone() for k, v in student.state_dict().items()}
    report: dict[str, Any] = {
        **provenance(command),
        "profile": profile.name,
        "hybrid_attention_layers": kept,
        "tokens": args.tokens,
        "stage_tokens": args.stage_tokens,
        "eval_tokens_per_text": args.eval_tokens,
        "samples": {"settings": dataclasses.asdict(settings), **stats},
        "data_mix": setup.data_mix(),
        "teacher": score(base.teacher, profile, tokenizer, args.eval_tokens),
        "recipe": {
            **score(student.eval(), profile, tokenizer, args.eval_tokens),
            "ppl_after": run.ppl_after,
        },
        "stages": {},
    }
    for name, rows in stage_setups(setup).items():
        student.load_state_dict(recipe_weights)
        stage = distill.run_induction_stage(
            student.train(), rows, args.stage_tokens, STAGE_RECALL, run.next_batch, name=name
        )
        report["stages"][name] = {
            "data_mix": rows.data_mix(),  # both already at the stage's recall share
            "tokens": stage.tokens,
            "seconds": stage.wall_seconds,
            **score(student.eval(), profile, tokenizer, args.eval_tokens),
        }
        scores = report["stages"][name]
        print(
            f"{name}: in {scores['in_domain']['ppl']:.1f}, out "
            f"{scores['out_of_domain']['ppl']:.1f}, copy {scores['copy_accuracy']:.3f}",
            flush=True,
        )
    return write_final(report, args.json, clock)


if __name__ == "__main__":
    sys.exit(main())
