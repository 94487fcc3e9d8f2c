"""Can a hybrid learn to copy when its attention is not where the teacher copies? (issue 20: a
recipe that keeps recall, chosen by evidence)

SmolLM2's copying needs about twelve of its thirty attention layers (teacher_copy_reach_cpu.json),
so a hybrid with two of them cannot keep the teacher's circuit: it has to build one. The cpu
teacher copies in one layer (3, induction score 0.94), and the book's hybrid keeps it. Here hybrids
of the cpu teacher keep one attention layer that is *not* its induction layer, so that, like
SmolLM2's hybrids, they must learn copying anew, trained by the book's recipe on the book's mix
(a quarter copy / recall rows): once as the book trains them, once with the copy-aware loss of
hyena_lite.copy_loss added to the KD stage (each weight of --weights), and once followed by an
"induction stage": --stage-tokens of rows that are recall rows with --stage-recall's share (recall
rows alone by default), KD plus the copy-aware loss at weight 1 and the read-out loss at
--stage-readout's (of the logit lens, or with --stage-readout-direct of the direct effect on the
logits), three times the KD learning rate, every weight trained (or, with --stage-trainable
attention, the kept attention alone). With --init-attention the kept layer starts from the
teacher's induction layer: its value and output projections (ov: the copying heads' OV circuits,
so that only where to look must be learned) or its whole attention (all). The hybrid that keeps
layer 3 is the reference, trained the same ways (what the loss and the stage add where the
teacher's copying heads are kept, as in SmolLM2's hybrids). Each model: validation perplexity,
copy and MQAR accuracy (the cpu evaluation's sizes), and where its attention looks on copy
sequences (the copy-aware loss there, and the attention its best head pays to the induction
target): whether it learned where to look, and whether it then reads out what it found (the best
attention layer's output alone, read by the head: the logit lens; and its direct effect on the
logits). GPT-2 teachers only (the cpu and smoke chains).

    PYTHONPATH=. python scripts/hybrid_copy_circuit.py \
        --json hyena_lite/results/hybrid_copy_circuit_cpu.json
    PYTHONPATH=. python scripts/hybrid_copy_circuit.py --layers 'keep 2' --weights '' \
        --init-attention all --stage-recall 0.25 --stage-tokens 786432 \
        --json hyena_lite/results/hybrid_copy_circuit_cpu.json  # the transplant arms, 4 min
    PYTHONPATH=. python scripts/hybrid_copy_circuit.py --smoke --json /tmp/circuit.json  # seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
from hyena_copy_capacity import recall_scores  # this folder's probe: copy and MQAR at cpu sizes

from hyena_lite import book_students, distill, runs
from hyena_lite.capture import capture_mixers
from hyena_lite.copy_loss import (
    attention_layers,
    attention_on_targets,
    final_residual,
    induction_loss,
    induction_targets,
    logit_lens,
    written_logits,
)
from hyena_lite.data import ordinary_tokens
from hyena_lite.probes import copy_batch, start_token
from hyena_lite.profiles import get_profile
from hyena_lite.provenance import provenance
from hyena_lite.recall import eager_attention
from hyena_lite.teacher_data import MixedSetup

ATTENTION_LAYERS = {"keep 3 (induction)": 3, "keep 2": 2, "keep 1": 1}


# --init-attention: what the kept attention layer takes from the teacher's induction layer (the
# book's choice, 3 in the cpu teacher) before training: its value and output projections (the
# copying heads' OV circuits, in their head slots), or its whole attention and the norm before it
TRANSPLANTS = {"ov": " (induction layer's OV)", "all": " (induction layer's attention)"}


def arms(
    weights: list[float],
    layers: list[str],
    stage_recall: float,
    stage_readout: float = 0.0,
    init_attention: str | None = None,
    stage_trainable: str = "all",
    stage_direct: bool = False,
) -> dict[str, tuple[int, float, bool, str | None]]:
    """Label -> (the attention layer kept, the copy-aware loss weight in KD, whether an induction
    stage follows, the transplant): every layer of `layers` as the book trains it, with each weight,
    and with the induction stage (plus the read-out loss at stage_readout, of the direct effect
    with stage_direct; training stage_trainable's weights); the non-induction layers start with
    init_attention's transplant."""
    found = {}
    rows = "" if stage_recall == 1 else f" ({stage_recall:g} recall rows)"
    kind = "direct read-out" if stage_direct else "read-out"
    readout = f" + {kind} {stage_readout:g}" if stage_readout else ""
    readout += "" if stage_trainable == "all" else f" ({stage_trainable} trained alone)"
    for name in layers:
        kept = ATTENTION_LAYERS[name]
        init = init_attention if kept != 3 else None
        label = name + (TRANSPLANTS[init] if init else "")
        found[label] = (kept, 0.0, False, init)
        found |= {f"{label} + copy loss {w:g}": (kept, w, False, init) for w in weights}
        found[f"{label} + induction stage{rows}{readout}"] = (kept, 0.0, True, init)
    return found


@torch.no_grad()
def transplant(
    teacher: torch.nn.Module, student: torch.nn.Module, source: int, kept: int, what: str
) -> None:
    """Give the student's attention layer `kept` the value and output projections of the teacher's
    layer `source` (what="ov"), or its whole attention and the norm before it (what="all"); GPT-2
    only."""
    source, target = teacher.transformer.h[source], student.transformer.h[kept]
    if what == "all":
        target.attn.load_state_dict(source.attn.state_dict())
        target.ln_1.load_state_dict(source.ln_1.state_dict())
        return
    width = teacher.config.n_embd  # c_attn's columns are [query | key | value]
    target.attn.c_attn.weight[:, 2 * width :] = source.attn.c_attn.weight[:, 2 * width :]
    target.attn.c_attn.bias[2 * width :] = source.attn.c_attn.bias[2 * width :]
    target.attn.c_proj.load_state_dict(source.attn.c_proj.state_dict())


@torch.no_grad()
def where_it_looks(model: torch.nn.Module, tokenizer, n: int) -> dict[str, float]:
    """On n copy sequences of 32 tokens, where copying is right: the copy-aware loss; the attention
    that the best head pays to the induction target; and what the best attention layer writes, its
    output alone read by the final norm and the head (the logit lens), and its direct effect on the
    model's logits (hyena_lite.copy_loss.written_logits): how often each is the next token."""
    ids, _ = copy_batch(ordinary_tokens(tokenizer), start_token(tokenizer), 32, n, seed=1)
    model.eval()
    kept = attention_layers(model)
    with (
        eager_attention(model),
        capture_mixers(model, kept, stop=False) as captured,
        final_residual(model) as final,
    ):
        out = model(input_ids=ids, output_attentions=True)
    attentions = [a for a in out.attentions if a is not None]
    targets, copyable = induction_targets(ids)
    right = copyable[:, :-1]
    lens, nexts, rest = logit_lens(model), ids[:, 1:][right], final["final"][:, :-1][right]

    def top1(logits: torch.Tensor) -> float:
        return (logits.argmax(-1) == nexts).float().mean().item()

    outputs = [captured[i]["output"][:, :-1][right] for i in kept]
    return {
        "induction_nll": induction_loss(attentions, targets, copyable).item(),
        "attention_on_target": attention_on_targets(attentions, targets)[copyable].mean().item(),
        # attention spread evenly over the t + 1 visible keys: the loss of a head that looks nowhere
        "uniform_nll": torch.arange(1, ids.shape[1] + 1)
        .log()
        .expand_as(ids)[copyable]
        .mean()
        .item(),
        "readout_top1": max(top1(written_logits(o, lens)) for o in outputs),
        "direct_readout_top1": max(top1(written_logits(o, lens, rest)) for o in outputs),
    }


def last_terms(records: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each loss term (kd, ce, induction, readout) over a run's last tenth of steps."""
    tail = records[-max(1, len(records) // 10) :]
    keys = [k for k in ("kd", "ce", "induction", "readout") if k in tail[0]]
    return {k: sum(r[k] for r in tail) / len(tail) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="the results file (resumed if it exists)")
    parser.add_argument("--tokens", type=int, default=None, help="tokens a model (book's)")
    parser.add_argument(
        "--weights", default="0.5", help="comma-separated copy-loss weights ('' for none)"
    )
    parser.add_argument(
        "--layers", default=",".join(ATTENTION_LAYERS), help="which arms (labels, commas)"
    )
    parser.add_argument(
        "--stage-tokens", type=int, default=1_572_864, help="tokens of the induction stage"
    )
    parser.add_argument(
        "--stage-recall", type=float, default=1.0, help="the induction stage's share of recall rows"
    )
    parser.add_argument(
        "--stage-readout",
        type=float,
        default=0.0,
        help="the read-out loss's weight in the induction stage (0: none)",
    )
    parser.add_argument(
        "--stage-readout-direct",
        action="store_true",
        help="the read-out loss scores the direct effect on the logits, not the logit lens alone",
    )
    parser.add_argument(
        "--stage-trainable",
        choices=["all", "attention"],
        default="all",
        help="what the induction stage trains: every weight, or the kept attention alone",
    )
    parser.add_argument(
        "--init-attention",
        choices=sorted(TRANSPLANTS),
        default=None,
        help="the kept attention starts from the teacher's layer 3: its OV, or all of it",
    )
    parser.add_argument("--seed", type=int, default=None, help="training seed (profile's)")
    parser.add_argument("--n", type=int, default=32, help="probe sequences per size")
    parser.add_argument("--smoke", action="store_true", help="the smoke profile, in seconds")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "scripts/hybrid_copy_circuit.py", *sys.argv[1:]])
    profile = get_profile("smoke" if args.smoke else "cpu")
    base = distill.make_setup(profile, progress=False)
    if args.seed is not None:
        base.config = dataclasses.replace(base.config, seed=args.seed)
    setup = MixedSetup.from_setup(base, recall_fraction=book_students.RECALL_FRACTION)
    layers = setup.teacher.config.num_hidden_layers
    (induction_layer,) = book_students.attention_layers_for(setup.teacher, setup.tokenizer)[1][:1]
    tokens = args.tokens or book_students.TOKENS.get(profile.name, profile.distill_tokens)
    if not 0 < args.stage_recall <= 1:
        raise SystemExit(f"--stage-recall must be in (0, 1], got {args.stage_recall}")
    weights = [float(w) for w in args.weights.split(",") if w]
    if args.stage_readout < 0:
        raise SystemExit(f"--stage-readout must be >= 0, got {args.stage_readout}")
    chosen = arms(
        weights,
        args.layers.split(","),
        args.stage_recall,
        args.stage_readout,
        args.init_attention,
        args.stage_trainable,
        args.stage_readout_direct,
    )
    stage_options = {}  # what this call adds to distill.INDUCTION_STAGE
    if args.stage_readout:
        stage_options["readout_weight"] = args.stage_readout
        stage_options["readout_direct"] = args.stage_readout_direct
    if args.stage_trainable != "all":
        stage_options["trainable"] = args.stage_trainable
    path = Path(args.json)
    report = json.loads(path.read_text()) if path.is_file() else {"models": {}}
    report |= {
        **provenance(command),
        "profile": profile.name,
        "tokens": tokens,
        "seed": setup.config.seed,
        "data_mix": setup.data_mix(),
        "recipe": "best",
    }
    if "teacher" not in report:
        report["teacher"] = recall_scores(setup.teacher, setup.tokenizer, args.n)
    report["teacher"] |= where_it_looks(setup.teacher, setup.tokenizer, args.n)  # a new probe too
    for label, (kept, weight, induction_stage, init) in chosen.items():
        if label in report["models"]:
            print(f"{label}: done before, kept", flush=True)
            continue
        clock = time.perf_counter()
        if kept >= layers:
            raise SystemExit(
                f"the teacher has {layers} layers; layer {kept} does not exist (--layers)"
            )
        hyena = [i for i in range(layers) if i != kept]
        options = {"kd": {"induction_weight": weight}} if weight else None
        hybrid = dataclasses.replace(setup, hyena_layers=hyena)

        def start(name: str, student: torch.nn.Module, kept=kept, init=init) -> None:
            if name == "init" and init:
                transplant(setup.teacher, student, induction_layer, kept, init)

        run = distill.run_recipe("best", hybrid, tokens, after_stage=start, stage_options=options)
        stage = {}
        if induction_stage:
            extra = distill.run_induction_stage(
                run.student,
                hybrid,
                args.stage_tokens,
                args.stage_recall,
                run.next_batch,
                **stage_options,
            )
            stage = {
                "induction_stage": {
                    **distill.INDUCTION_STAGE,
                    **stage_options,
                    "tokens": extra.tokens,
                    "recall_fraction": args.stage_recall,
                },
                "val_ppl_after_stage": math.exp(
                    distill.validation_loss(run.student, setup.curve_windows)
                ),
                "stage_terms_last_tenth": last_terms(extra.records),
            }
        report["models"][label] = {
            "command": command,
            "commit": report["commit"],
            "attention_layer": kept,
            "copy_loss_weight": weight,
            "init_attention": init,
            **({"init_attention_from": induction_layer} if init else {}),
            "val_ppl": run.ppl_after,
            "kd_terms_last_tenth": last_terms(run.runs["kd"][-1].records),
            **stage,
            **where_it_looks(run.student, setup.tokenizer, args.n),
            **recall_scores(run.student, setup.tokenizer, args.n),
            "seconds": time.perf_counter() - clock,
        }
        print(f"{label}: {report['models'][label]}", flush=True)
        runs.write_json(path, report)  # after every model: a cut run resumes
    runs.write_json(path, report)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
