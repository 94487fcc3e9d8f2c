"""Issue 20's headline assembled from one run per model (`scripts/smollm2_headline.py`): the
ratios recomputed, the equal-token comparison with scratch, the checks that refuse runs that do
not compare, the history kept and the curves joined."""

from __future__ import annotations

import csv
import json
import math

import pytest

MIX = {"corpus": 0.15, "teacher_samples": 0.5, "recall": 0.1, "broad": 0.25}
PROTOCOL = "sliding windows"


def run_file(model: str, ppl: float, ood: float, tokens: int, stage: dict | None = None) -> dict:
    """A results file of `smollm2_h200.py run --models MODEL`, with the keys the script reads."""
    student = {"recipe": "transfer", "data_mix": dict(MIX), "attention_layers": [17, 18]}
    if stage:
        student["induction_stage"] = stage
    return {
        "teacher": "smollm2-135m",
        "teacher_note": "de-quantised",
        "protocol": PROTOCOL,
        "teacher_ppl": 20.0,
        f"{model}_ppl": ppl,
        "out_of_domain": {"teacher": 22.0, model: ood},
        "bits_per_byte": {"teacher": {"in_domain": 1.2}, model: {"in_domain": 1.5}},
        "copy_accuracy": {"teacher": 0.6, model: 0.5},
        "tokens": {model: tokens},
        "students": {model: student},
        "per_text": {"teacher": {}, model: {}},
        "teacher_heads": {"induction": [0.1, 0.9]},
        "command": f"python scripts/smollm2_h200.py run --models {model}",
        "commit": f"c-{model}",
        "hardware": "NVIDIA H100 80GB HBM3",
        "history": [
            {"tokens": tokens, "student": model, "recipe": "transfer", "ppl": ppl},
        ],
    }


def write_runs(tmp_path, runs: dict[str, dict]) -> list[str]:
    args = []
    for model, run in runs.items():
        path = tmp_path / f"{model}.json"
        path.write_text(json.dumps(run))
        with open(tmp_path / f"{model}_curves.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, ["model", "stage", "kind", "tokens", "value"])
            writer.writeheader()
            for name in (model, "other"):  # only the model's own rows travel
                writer.writerow(
                    {"model": name, "stage": "kd", "kind": "loss", "tokens": 1, "value": 2}
                )
        args += ["--model", f"{model}={path}"]
    return args


def test_headline_recomputes_ratios_and_compares_scratch_at_equal_tokens(
    tmp_path, load_script
) -> None:
    script = load_script("smollm2_headline")
    before = {"in_domain": {"ppl": 40.0}, "out_of_domain": {"ppl": 60.0}}
    runs = {
        "teacher_ft": run_file("teacher_ft", 18.0, 23.0, 1000),
        "hyena": run_file("hyena", 50.0, 90.0, 1000),
        "hybrid": run_file("hybrid", 30.0, 50.0, 5000, {"tokens": 4000, "scores_before": before}),
        "scratch": run_file("scratch", 300.0, 1000.0, 1000),
    }
    previous = {"history": [{"tokens": 9, "student": "hyena", "recipe": "x", "ppl": 80.0}]}
    (tmp_path / "previous.json").write_text(json.dumps(previous))
    out = tmp_path / "headline.json"
    script.main(
        [
            *write_runs(tmp_path, runs),
            "--previous",
            str(tmp_path / "previous.json"),
            "--out",
            str(out),
            "--note",
            "n",
        ]
    )
    result = json.loads(out.read_text())
    assert result["hybrid_ppl"] == 30.0 and result["teacher_ppl"] == 20.0
    assert result["vs_teacher"]["hybrid"] == {"in_domain": 1.5, "out_of_domain": 50 / 22}
    assert math.isclose(result["vs_teacher_ft"]["hyena"]["in_domain"], 50 / 18)
    # the hybrid against scratch before its induction stage, at scratch's 1,000 tokens
    assert result["vs_scratch_at_equal_tokens"]["hybrid"] == {
        "tokens": 1000,
        "in_domain": 40 / 300,
        "out_of_domain": 60 / 1000,
    }
    assert result["vs_scratch_at_equal_tokens"]["hyena"]["in_domain"] == 50 / 300
    assert result["students"]["hyena"]["source"]["commit"] == "c-hyena"
    assert set(result["copy_accuracy"]) == {"teacher", *runs}
    assert [r["ppl"] for r in result["history"]] == [80.0, 18.0, 50.0, 30.0, 300.0]
    assert result["hardware"] == "NVIDIA H100 80GB HBM3" and result["run_note"] == "n"
    with open(tmp_path / "headline_curves.csv", newline="") as f:
        assert sorted(row["model"] for row in csv.DictReader(f)) == sorted(runs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda run: run.update(teacher_ppl=21.0), "not the same teacher"),
        (lambda run: run.update(protocol="disjoint"), "another protocol"),
        (lambda run: run["students"]["hyena"]["data_mix"].update(recall=0.2), "one mix"),
        (lambda run: run["tokens"].update(hyena=7), "never stood at scratch"),
    ],
)
def test_headline_refuses_runs_that_do_not_compare(tmp_path, load_script, change, message) -> None:
    script = load_script("smollm2_headline")
    runs = {
        "hyena": run_file("hyena", 50.0, 90.0, 1000),
        "scratch": run_file("scratch", 300.0, 1000.0, 1000),
    }
    change(runs["hyena"])
    out = ["--out", str(tmp_path / "h.json"), "--note", "n"]
    with pytest.raises(SystemExit, match=message):
        script.main([*write_runs(tmp_path, runs), *out])


def test_headline_refuses_a_file_without_its_model(tmp_path, load_script) -> None:
    script = load_script("smollm2_headline")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run_file("hyena", 50.0, 90.0, 1000)))
    with pytest.raises(SystemExit, match="no 'hybrid' model"):
        script.main(["--model", f"hybrid={path}", "--out", str(tmp_path / "h"), "--note", "n"])
    with pytest.raises(SystemExit, match="MODEL=FILE"):
        script.main(["--model", f"teacher={path}", "--out", str(tmp_path / "h"), "--note", "n"])
