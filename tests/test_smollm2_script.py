"""Tests of scripts/smollm2_h200.py that need no GPU and no teacher: the merge of the parts and the
per-layer alignment losses it reports."""

from __future__ import annotations

import csv
import json

import pytest

from hyena_lite.distill import RecipeRun
from hyena_lite.training import TrainResult


def student(
    ppl: float, stage_seconds: dict[str, float], nmse: dict[int, float] | None = None
) -> dict:
    recipe = "scratch" if "ce" in stage_seconds else "transfer"
    curve = {"tokens": [10, 20], "loss": [3.0, 2.5], "ce": None, "val_ppl": [[20, ppl + 1]]}
    return {
        "recipe": recipe,
        "val_ppl": ppl,
        "tokens": 20,
        "steps": 2,
        "train_seconds": 1.0,
        "eval_seconds": 30.0,
        "stage_seconds": stage_seconds,
        "curve_ppl_after": {"init": 1e6},
        "calibration": {},
        "layer_nmse": nmse or {},
        "curves": {"kd": curve},
        "suite": {"texts": {"validation/bible": {"ppl": ppl}}, "cloze": {"accuracy": 0.1}},
    }


def part(name: str, model: dict, tokens: int = 20, teacher: bool = False, **extra) -> dict:
    out = {
        "part": "scratch" if name == "scratch" else f"distill-{name}",
        "command": f"python x {name}",
        "commit": "abc",
        "hardware": "H200",
        "settings": {"tokens": tokens},
        "models": {name: model},
        "tokens_per_student": tokens,
        "wall_seconds": 60.0,
        **extra,
    }
    if teacher:
        out["teacher"] = {"val_ppl": 25.0, "suite": {"texts": {"validation/bible": {"ppl": 25.0}}}}
    return out


def write_parts(tmp_path, parts: list[dict]) -> list[str]:
    paths = []
    for i, p in enumerate(parts):
        path = tmp_path / f"part{i}.json"
        path.write_text(json.dumps(p))
        paths.append(str(path))
    return paths


def test_merge_joins_the_parts_into_headline_keys_and_curves(tmp_path, load_script):
    script = load_script("smollm2_h200")
    parts = [
        part(
            "hyena", student(33.0, {"transfer": 120.0, "kd": 450.0}, {0: 0.2, 1: 0.3}), teacher=True
        ),
        part(
            "hybrid",
            student(26.0, {"transfer": 110.0, "kd": 430.0}, {1: 0.3}),
            hybrid_attention_layers=[0],
        ),
        part("scratch", student(80.0, {"ce": 500.0})),
    ]
    results = tmp_path / "smollm2.json"
    script.main(
        ["merge", *write_parts(tmp_path, parts), "--results", str(results), "--note", "test"]
    )
    out = json.loads(results.read_text())
    assert out["teacher_ppl"] == 25.0 and out["hyena_ppl"] == 33.0 and out["scratch_ppl"] == 80.0
    assert out["hybrid_vs_teacher"] == pytest.approx(26.0 / 25.0)
    assert out["hybrid_attention_layers"] == [0]
    assert out["layer_nmse"] == {"hyena": {"0": 0.2, "1": 0.3}, "hybrid": {"1": 0.3}}, (
        "only students that aligned"
    )
    assert out["gpu_minutes"]["hyena"] == pytest.approx((120 + 450 + 30) / 60), (
        "training from the records + eval"
    )
    assert set(out["per_domain"]) == {"teacher", "hyena", "hybrid", "scratch"}
    assert out["attention_layers"] == {"hyena": [], "hybrid": [0], "scratch": None}
    assert [(r["student"], r["ppl"]) for r in out["history"]] == [
        ("hyena", 33.0),
        ("hybrid", 26.0),
        ("scratch", 80.0),
    ]
    rows = list(csv.DictReader(open(tmp_path / "smollm2_curves.csv")))
    assert {r["model"] for r in rows} == {"hyena", "hybrid", "scratch"}
    assert {r["kind"] for r in rows} == {"loss", "val_ppl"}


def test_merge_carries_the_history_and_the_layer_sensitivity_of_earlier_files(
    tmp_path, load_script
):
    script = load_script("smollm2_h200")
    earlier = tmp_path / "earlier.json"
    old_row = {
        "tokens": 10,
        "student": "hyena",
        "recipe": "best",
        "attention_layers": [],
        "ppl": 60.0,
    }
    earlier.write_text(
        json.dumps(
            {"history": [old_row], "history_note": "by hand", "layer_sensitivity": {"0": 1.5}}
        )
    )
    parts = [part("hyena", student(33.0, {"kd": 1.0}), teacher=True, hybrid_attention_layers=[0])]
    results = tmp_path / "r.json"
    args = [
        "merge",
        *write_parts(tmp_path, parts),
        "--results",
        str(results),
        "--previous",
        str(earlier),
    ]
    script.main(args)
    out = json.loads(results.read_text())
    assert (
        out["history"][0] == old_row
        and out["history"][1]["ppl"] == 33.0
        and len(out["history"]) == 2
    )
    assert out["layer_sensitivity"] == {"0": 1.5} and out["history_note"] == "by hand"
    script.main(
        [*args[:-1], str(results)]
    )  # merging again on top of its own output lists each run once
    assert len(json.loads(results.read_text())["history"]) == 2


def test_merge_refuses_parts_trained_on_different_budgets(tmp_path, load_script):
    script = load_script("smollm2_h200")
    parts = [
        part("hyena", student(33.0, {"kd": 1.0}), teacher=True, hybrid_attention_layers=[0]),
        part("scratch", student(80.0, {"ce": 1.0}), tokens=40),
    ]
    with pytest.raises(ValueError, match="different token budgets"):
        script.main(["merge", *write_parts(tmp_path, parts), "--results", str(tmp_path / "r.json")])


def records(layers: dict[int, list[float]]) -> TrainResult:
    steps = len(next(iter(layers.values())))
    return TrainResult(
        [{"loss": 0.0, **{f"nmse_layer{k}": v[i] for k, v in layers.items()}} for i in range(steps)]
    )


def test_layer_nmse_reads_the_last_three_steps_of_transfer_or_of_each_progressive_layer(
    load_script,
):
    script = load_script("smollm2_h200")
    transfer = RecipeRun(
        None, {"transfer": [records({3: [9, 1, 2, 3], 5: [9, 4, 4, 4]})], "kd": []}, {}
    )
    assert script.layer_nmse(transfer) == {3: pytest.approx(2.0), 5: pytest.approx(4.0)}
    progressive = RecipeRun(
        None, {"progressive": [records({0: [5, 1, 1, 1]}), records({1: [5, 6, 6, 6]})]}, {}
    )
    assert script.layer_nmse(progressive) == {0: pytest.approx(1.0), 1: pytest.approx(6.0)}
    assert script.layer_nmse(RecipeRun(None, {"ce": []}, {})) == {}, (
        "a scratch student aligned nothing"
    )
