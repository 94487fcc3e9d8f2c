"""Assemble issue 20's headline results file from the best run of each model.

Each `scripts/smollm2_h200.py run` may train one model at a time (`--models hybrid`), so the best
recipe of each student lives in its own results file. This script takes one file per model,
checks that they compare (the same protocol, the same teacher scores, the same data mix for every
trained model), and writes the keys of issue 20 with every student beside the others, each with
its source file, command, commit and hardware; the ratios are recomputed, the earlier headline
goes into `history`, and the curves CSVs are joined:

    python scripts/smollm2_headline.py --model teacher_ft=FILE --model hyena=FILE \\
        --model hybrid=FILE --model scratch=FILE --previous hyena_lite/results/smollm2_h200.json \\
        --out hyena_lite/results/smollm2_h200.json --note "why these runs"

Distilled beats scratch "at equal tokens": a student trained longer than scratch (the hybrid's
induction stage) is compared by its scores before that stage, when it had scratch's tokens.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
from pathlib import Path

from hyena_lite.provenance import provenance

MODELS = ("teacher_ft", "hyena", "hybrid", "scratch")
# per-model entries of a run's results file, each a dict keyed by model
PER_MODEL = (
    "out_of_domain",
    "bits_per_byte",
    "copy_accuracy",
    "by_copy_class",
    "held_out_samples_ppl",
    "kl_to_teacher",
    "copy_accuracy_by_stage",
    "tokens",
    "layer_nmse",
    "students",
    "per_text",
)
TEACHER_TOLERANCE = 1e-3  # the teacher scored in two runs: same windows, same weights


def parse_sources(pairs: list[str]) -> dict[str, Path]:
    """MODEL=FILE pairs as a dict, refusing unknown models and repeats."""
    sources: dict[str, Path] = {}
    for pair in pairs:
        model, sep, file = pair.partition("=")
        if not sep or model not in MODELS:
            raise SystemExit(f"--model {pair!r}: give MODEL=FILE with MODEL one of {MODELS}")
        if model in sources:
            raise SystemExit(f"--model {model} is given twice")
        sources[model] = Path(file)
    return sources


def load_runs(sources: dict[str, Path]) -> dict[str, dict]:
    """Each model's run file, checked to hold that model."""
    runs = {}
    for model, path in sources.items():
        if not path.is_file():
            raise SystemExit(f"--model {model}={path}: no such file")
        run = json.loads(path.read_text())
        if run.get(f"{model}_ppl") is None:
            raise SystemExit(f"{path} has no {model!r} model (no {model}_ppl)")
        runs[model] = run
    return runs


def check_comparable(runs: dict[str, dict]) -> None:
    """Refuse runs that do not compare: another protocol, another teacher score, another mix."""
    first_model, first = next(iter(runs.items()))
    for model, run in runs.items():
        if run.get("protocol") != first.get("protocol"):
            raise SystemExit(
                f"{model}'s run scores by another protocol than {first_model}'s: "
                f"{run.get('protocol')!r} vs {first.get('protocol')!r}"
            )
        for where, value, reference in (
            ("in domain", run["teacher_ppl"], first["teacher_ppl"]),
            (
                "out of domain",
                run["out_of_domain"]["teacher"],
                first["out_of_domain"]["teacher"],
            ),
        ):
            if not math.isclose(value, reference, rel_tol=TEACHER_TOLERANCE):
                raise SystemExit(
                    f"the teacher scores {value:.4f} {where} in {model}'s run and "
                    f"{reference:.4f} in {first_model}'s: not the same teacher or texts"
                )
    mixes = {model: run["students"][model]["data_mix"] for model, run in runs.items()}
    reference_mix = next(iter(mixes.values()))
    for model, mix in mixes.items():
        if mix.keys() != reference_mix.keys() or any(
            not math.isclose(mix[k], reference_mix[k], abs_tol=1e-9) for k in mix
        ):
            raise SystemExit(
                f"{model} trained on the data mix {mix}, not {reference_mix}: the control and "
                "the ratios need one mix"
            )


def at_tokens(model: str, run: dict, tokens: int) -> dict | None:
    """The model's in- and out-of-domain perplexity after `tokens` training tokens: its final
    scores, or those before its induction stage; None if it never stood at that count."""
    if run["tokens"][model] == tokens:
        return {"in_domain": run[f"{model}_ppl"], "out_of_domain": run["out_of_domain"][model]}
    stage = run["students"][model].get("induction_stage")
    if stage and run["tokens"][model] - stage["tokens"] == tokens:
        before = stage["scores_before"]
        return {
            "in_domain": before["in_domain"]["ppl"],
            "out_of_domain": before["out_of_domain"]["ppl"],
        }
    return None


def ratios(ppl: dict, ood: dict, reference: str) -> dict:
    """Every other model's perplexity over the reference's, in and out of domain."""
    if reference not in ppl:
        return {}
    return {
        name: {
            "in_domain": ppl[name] / ppl[reference],
            "out_of_domain": ood[name] / ood[reference],
        }
        for name in ppl
        if name != reference
    }


def headline(runs: dict[str, dict], previous: dict | None, note: str, command: str) -> dict:
    """The headline keys of issue 20 over the given runs, each student's source beside it."""
    first = next(iter(runs.values()))
    ppl = {"teacher": first["teacher_ppl"], **{m: r[f"{m}_ppl"] for m, r in runs.items()}}
    per_model: dict[str, dict] = {key: {} for key in PER_MODEL}
    for key in PER_MODEL:  # the teacher's entry from the first run that scored it so
        teacher = next(
            (r[key]["teacher"] for r in runs.values() if "teacher" in (r.get(key) or {})), None
        )
        if teacher is not None:
            per_model[key]["teacher"] = teacher
    for model, run in runs.items():
        for key in PER_MODEL:
            if model in (run.get(key) or {}):
                per_model[key][model] = run[key][model]
        per_model["students"][model] = {
            **per_model["students"][model],
            "source": {k: run.get(k) for k in ("command", "commit", "hardware")},
        }
    ood = per_model["out_of_domain"]
    equal_tokens = {}
    if "scratch" in runs:
        scratch_tokens = runs["scratch"]["tokens"]["scratch"]
        for model in ("hyena", "hybrid"):
            if model in runs:
                scores = at_tokens(model, runs[model], scratch_tokens)
                if scores is None:
                    raise SystemExit(
                        f"{model} never stood at scratch's {scratch_tokens:,} tokens: "
                        "distilled against scratch needs equal tokens"
                    )
                equal_tokens[model] = {
                    "tokens": scratch_tokens,
                    **{
                        where: ppl_at / (ppl["scratch"] if where == "in_domain" else ood["scratch"])
                        for where, ppl_at in scores.items()
                    },
                }
    hardware = sorted({run["hardware"] for run in runs.values()})
    history = list((previous or {}).get("history", []))
    seen = {(r["tokens"], r["student"], r["recipe"], round(r["ppl"], 6)) for r in history}
    for model, run in runs.items():
        for row in run.get("history", []):
            key = (row["tokens"], row["student"], row["recipe"], round(row["ppl"], 6))
            if row["student"] == model and key not in seen:
                history.append(row)
                seen.add(key)
    return {
        "teacher": first["teacher"],
        "teacher_note": first.get("teacher_note"),
        "protocol": first["protocol"],
        **{f"{name}_ppl": ppl.get(name) for name in ("teacher", *MODELS)},
        "out_of_domain": ood,
        "bits_per_byte": per_model["bits_per_byte"],
        "vs_teacher": ratios(ppl, ood, "teacher"),
        "vs_teacher_ft": ratios(ppl, ood, "teacher_ft"),
        # each distilled student's perplexity over scratch's, at scratch's tokens
        "vs_scratch_at_equal_tokens": equal_tokens,
        **{k: per_model[k] for k in PER_MODEL if k not in ("out_of_domain", "bits_per_byte")},
        "teacher_heads": first.get("teacher_heads"),
        "hybrid_attention_layers": (
            runs["hybrid"]["students"]["hybrid"]["attention_layers"] if "hybrid" in runs else None
        ),
        "sources": {model: run.get("command") for model, run in runs.items()},
        **provenance(command),
        "hardware": " + ".join(hardware),
        "run_note": note,
        "history": history,
        "history_note": (previous or {}).get("history_note"),
    }


def join_curves(sources: dict[str, Path], out: Path) -> int:
    """Each model's rows of its run's curves CSV, into one CSV beside the headline; rows written."""
    rows = []
    for model, path in sources.items():
        curves = path.with_name(path.stem + "_curves.csv")
        if curves.is_file():
            with open(curves, newline="") as f:
                rows += [row for row in csv.DictReader(f) if row["model"] == model]
    with open(out.with_name(out.stem + "_curves.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, ["model", "stage", "kind", "tokens", "value"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", action="append", required=True, help="MODEL=FILE, once per model"
    )
    parser.add_argument("--previous", help="the headline these runs replace (kept in history)")
    parser.add_argument("--out", required=True, help="the headline results file to write")
    parser.add_argument("--note", required=True, help="why these runs: the run_note")
    args = parser.parse_args(argv)
    sources = parse_sources(args.model)
    runs = load_runs(sources)
    check_comparable(runs)
    previous = json.loads(Path(args.previous).read_text()) if args.previous else None
    command = shlex.join(["python", "scripts/smollm2_headline.py", *(argv or sys.argv[1:])])
    out = Path(args.out)
    result = headline(runs, previous, args.note, command)
    out.write_text(json.dumps(result, indent=1) + "\n")
    rows = join_curves(sources, out)
    print(f"wrote {out} and its curves ({rows} rows) from {len(runs)} runs")


if __name__ == "__main__":
    main()
