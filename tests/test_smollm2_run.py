"""The one-device SmolLM2 pipeline of issue 20 (`scripts/smollm2_h200.py run`), whole, on the CPU
with a tiny random GPT-2 teacher (--smoke): every key of the results file, and a second call that
finds everything done and trains nothing."""

from __future__ import annotations

import csv
import json
import time

import pytest

from hyena_lite.paths import assets_dir

pytestmark = pytest.mark.skipif(
    not (assets_dir() / "ood" / "manifest.json").is_file(),
    reason="the out-of-domain texts are not built: python -m hyena_lite data",
)


def test_smoke_run_writes_every_key_and_resumes(tmp_path, load_script):
    script = load_script("smollm2_h200")
    out = tmp_path / "run"
    broad = ["--broad-fraction", "0.2"]  # the broad text's rows in the mix too
    script.main(["run", "--smoke", "--out", str(out), "--no-progress", *broad])
    results = json.loads((out / "smollm2_smoke.json").read_text())
    models = ("teacher", "teacher_ft", "hyena", "hybrid", "scratch")
    assert all(results[f"{m}_ppl"] > 1 for m in models)
    assert set(results["out_of_domain"]) == set(models) == set(results["copy_accuracy"])
    assert all(0.0 <= a <= 1.0 for a in results["copy_accuracy"].values())
    assert list(results["copy_accuracy_by_stage"]["hyena"]) == [
        "init",
        "calibrate",
        "transfer",
        "kd",
    ]
    heads = results["teacher_heads"]
    assert len(heads["induction"]) == len(heads["previous_token"]) == 3  # the tiny teacher's layers
    kept = results["hybrid_attention_layers"]
    assert kept == sorted(sorted(range(3), key=heads["induction"].__getitem__)[-2:])
    students = results["students"]
    assert (
        students["hybrid"]["attention_layers"] == kept
        and students["hyena"]["attention_layers"] == []
    )
    assert {s["tokens"] for s in students.values()} == {
        results["tokens_per_student"]
    }  # equal tokens
    assert students["hyena"]["data_mix"] == pytest.approx(
        {"corpus": 0.2, "teacher_samples": 0.5, "recall": 0.1, "broad": 0.2}
    )
    assert set(results["per_text"]["hyena"]) == {
        "validation/shakespeare",
        "validation/austen",
        "validation/bible",
        "ood/technical",
        "ood/narrative",
        "ood/speech",
    }
    for part in ("in_domain", "out_of_domain", "held_out_samples"):  # drift, per layer
        drift = students["hybrid"]["drift"][part]
        hyena_layers = [str(i) for i in range(3) if i not in kept]
        assert list(drift["mixer"]) == hyena_layers
        assert len(drift["hidden"]) == len(drift["first_token"]) == 3
    assert "drift" not in students["teacher_ft"] and "drift" in students["hyena"]
    for part in ("in_domain", "out_of_domain"):  # each model's tokens split by copy class
        classes = results["by_copy_class"]["hybrid"][part]
        assert sum(c["tokens"] for c in classes.values()) == sum(
            results["per_text"]["hybrid"][t]["tokens"]
            for t in results["per_text"]["hybrid"]
            if t.startswith("ood/") == (part == "out_of_domain")
        )
    assert results["vs_teacher"]["hyena"]["in_domain"] == pytest.approx(
        results["hyena_ppl"] / results["teacher_ppl"]
    )
    assert set(results["layer_nmse"]) == {"hyena", "hybrid"} and set(results["tokens"]) == set(
        students
    )
    curves = (out / "smollm2_smoke_curves.csv").read_text().splitlines()
    assert curves[0] == "model,stage,kind,tokens,value" and any(
        r.startswith("hyena,kd,") for r in curves
    )
    assert results["samples"]["teacher_ppl_on_samples"] > 1
    # the teacher's samples from its start token, seeded apart: every model scored on them, and
    # the students' KL from the teacher on every part
    held_out = results["held_out_samples"]
    assert held_out["settings"]["prompts"] == "bos" and held_out["settings"]["seed"] == 1
    assert set(results["held_out_samples_ppl"]) == set(models)
    assert all(p > 1 for p in results["held_out_samples_ppl"].values())
    assert set(results["kl_to_teacher"]) == set(models) - {"teacher"}
    for kl in results["kl_to_teacher"].values():
        assert set(kl) == {"in_domain", "out_of_domain", "held_out_samples"}
        assert all(k > 0 for k in kl.values())
    assert results["samples"]["sequences_made"] == 8 and results["commit"] and results["hardware"]
    assert len(results["history"]) == 4
    clock = time.perf_counter()
    script.main(["run", "--smoke", "--out", str(out), "--no-progress", *broad])  # all done
    again = json.loads((out / "smollm2_smoke.json").read_text())
    assert time.perf_counter() - clock < 60
    assert again["hyena_ppl"] == results["hyena_ppl"]
    assert len(again["wall_seconds_per_call"]) == 2
    assert again["history"] == results["history"]  # kept, and this run's rows not twice
    with pytest.raises(SystemExit, match="holds a run of 1,024 tokens"):
        script.main(
            ["run", "--smoke", "--out", str(out), "--tokens", "2048", "--no-progress", *broad]
        )


def test_smoke_hybrid_with_induction_stage(tmp_path, load_script, capsys):
    """--induction-stage-tokens: the hybrid's recipe, then the induction stage on its own tokens
    (copy accuracy probed after it, the stage's settings and tokens recorded); a call without the
    hybrid among its models is refused before any training; --compile-cache is tried first and
    written last (nothing to load on a first call)."""
    script = load_script("smollm2_h200")
    out = tmp_path / "run"
    stage = ["--induction-stage-tokens", "512", "--induction-stage-recall", "0.5"]
    hybrid_only = ["run", "--smoke", "--models", "hybrid", "--out", str(out), "--no-progress"]
    cache = str(tmp_path / "compiled.gz")
    script.main([*hybrid_only, *stage, "--compile-cache", cache])
    log = capsys.readouterr().out
    assert f"compile cache {cache}: loaded None" in log and f"compile cache {cache}: saved" in log
    results = json.loads((out / "smollm2_smoke.json").read_text())
    hybrid = results["students"]["hybrid"]
    assert list(results["copy_accuracy_by_stage"]["hybrid"]) == [
        "init",
        "calibrate",
        "transfer",
        "kd",
        "induction",
    ]
    assert hybrid["induction_stage"]["tokens"] == 512
    assert hybrid["induction_stage"]["recall_fraction"] == 0.5
    stage_mix, recipe_mix = hybrid["induction_stage"]["data_mix"], hybrid["data_mix"]
    assert stage_mix["recall"] == 0.5 and stage_mix["corpus"] > 0  # the corpus keeps its share
    rest = 1 - recipe_mix["recall"]
    assert stage_mix["teacher_samples"] / 0.5 == pytest.approx(recipe_mix["teacher_samples"] / rest)
    assert hybrid["induction_stage"]["induction_weight"] > 0
    before = hybrid["induction_stage"]["scores_before"]  # the recipe's hybrid, before the stage
    assert before["copy_accuracy"] == results["copy_accuracy_by_stage"]["hybrid"]["kd"]
    assert before["in_domain"]["ppl"] != results["hybrid_ppl"]
    assert hybrid["tokens"] == results["tokens_per_student"] + 512
    assert hybrid["passes"]["corpus"] > 0 and hybrid["passes"]["teacher_samples"] > 0
    assert "induction" in hybrid["stage_seconds"] and hybrid["curve_ppl_after"]["induction"] > 1
    assert results["history"][-1]["induction_stage"]["tokens"] == 512
    with open(out / "smollm2_smoke_curves.csv") as f:  # the stage's curve follows the recipe's
        curves = [row for row in csv.DictReader(f) if row["model"] == "hybrid"]
    recipe_end = max(float(row["tokens"]) for row in curves if row["stage"] == "kd")
    stage_tokens = [float(row["tokens"]) for row in curves if row["stage"] == "induction"]
    assert stage_tokens and recipe_end < min(stage_tokens) <= max(stage_tokens) <= recipe_end + 512
    ood = [row for row in curves if row["kind"] == "ood_ppl"]  # the generality curve, each stage
    assert {row["stage"] for row in ood} >= {"kd", "induction"}
    assert all(1 < float(row["value"]) < float("inf") for row in ood)
    with pytest.raises(SystemExit, match="add hybrid to --models"):
        script.main(["run", "--smoke", "--models", "hyena", "--out", str(tmp_path / "x"), *stage])


def test_smoke_induction_stage_variants_start_from_the_recipe(tmp_path, load_script):
    """Two variants (recall share, lr scale) of the induction stage: each trained from the
    recipe's weights on the same batches and scored, the hybrid keeping the last; lists of
    different lengths and a negative learning-rate scale are refused before any training."""
    script = load_script("smollm2_h200")
    out = tmp_path / "run"
    hybrid_only = ["run", "--smoke", "--models", "hybrid", "--out", str(out), "--no-progress"]
    stage = ["--induction-stage-tokens", "512", "--induction-stage-recall", "0.25,0.5"]
    script.main([*hybrid_only, *stage, "--induction-stage-lr-scale", "1,3"])
    results = json.loads((out / "smollm2_smoke.json").read_text())
    record = results["students"]["hybrid"]["induction_stage"]
    first, last = record["variants"]
    assert (first["recall_fraction"], first["lr_scale"]) == (0.25, 1.0)
    assert (last["recall_fraction"], last["lr_scale"]) == (0.5, 3.0)
    assert record["recall_fraction"] == 0.5 and record["lr_scale"] == 3.0
    by_stage = results["copy_accuracy_by_stage"]["hybrid"]
    assert {first["label"], last["label"]} <= set(by_stage)
    # the first variant's scores are its own; the last's are the hybrid's headline scores
    assert first["scores_after"]["copy_accuracy"] == by_stage[first["label"]]
    assert (
        last["scores_after"] is None
        and results["copy_accuracy"]["hybrid"] == by_stage[last["label"]]
    )
    assert first["scores_after"]["in_domain"]["ppl"] != results["hybrid_ppl"]
    assert results["students"]["hybrid"]["tokens"] == results["tokens_per_student"] + 512
    # the same variant twice: the second starts where the first started, not where it ended
    same = ["--induction-stage-recall", "0.5,0.5", "--induction-stage-lr-scale", "3"]
    twice = [*hybrid_only[:-3], "--out", str(tmp_path / "twice"), "--no-progress"]
    script.main([*twice, "--induction-stage-tokens", "512", *same])
    results = json.loads((tmp_path / "twice" / "smollm2_smoke.json").read_text())
    one, two = results["students"]["hybrid"]["induction_stage"]["variants"]
    assert one["curve_ppl_after"] == pytest.approx(two["curve_ppl_after"], rel=1e-5)
    # the control: the copy-aware loss off, so the stage is the recipe's KD continued
    control = [*hybrid_only[:-3], "--out", str(tmp_path / "control"), "--no-progress"]
    weights = ["--induction-stage-weight", "1,0"]
    script.main([*control, "--induction-stage-tokens", "512", *same, *weights])
    results = json.loads((tmp_path / "control" / "smollm2_smoke.json").read_text())
    with_loss, without = results["students"]["hybrid"]["induction_stage"]["variants"]
    assert (with_loss["induction_weight"], without["induction_weight"]) == (1.0, 0.0)
    assert without["label"].endswith("_w0") and not with_loss["label"].endswith("_w1")
    assert with_loss["curve_ppl_after"] != pytest.approx(without["curve_ppl_after"], rel=1e-6)
    bad = tmp_path / "bad"
    with pytest.raises(SystemExit, match="one value or 3, one per variant"):
        script.main(
            [*hybrid_only[:-3], "--out", str(bad), *stage, "--induction-stage-lr-scale", "1,2,3"]
        )
    with pytest.raises(SystemExit, match="must be >= 0"):
        script.main([*hybrid_only, *stage, "--induction-stage-weight", "-1"])
    with pytest.raises(SystemExit, match="must be positive"):
        script.main([*hybrid_only, *stage, "--induction-stage-lr-scale", "-1"])


def test_smoke_longer_transfer_and_its_refusals(tmp_path, load_script):
    """--transfer-tokens: the students' attention transfer on its own budget (the KD stage keeps
    its share); a budget that is not whole steps, or a recipe without a transfer, is refused
    before any training."""
    script = load_script("smollm2_h200")
    out = tmp_path / "run"
    hybrid_only = ["run", "--smoke", "--models", "hybrid", "--out", str(out), "--no-progress"]
    script.main(hybrid_only)
    plain = json.loads((out / "smollm2_smoke.json").read_text())["students"]["hybrid"]["tokens"]
    step = 2 * 64  # --smoke: micro-batches of 2 x 64 tokens
    longer = ["--transfer-tokens", str(8 * step), "--out", str(tmp_path / "longer")]
    script.main([*hybrid_only[:-3], *longer, "--no-progress"])
    results = json.loads((tmp_path / "longer" / "smollm2_smoke.json").read_text())
    quarter = results["tokens_per_student"] // 4
    assert results["students"]["hybrid"]["tokens"] == plain - quarter + 8 * step
    assert results["settings"]["transfer_tokens"] == 8 * step
    with pytest.raises(SystemExit, match="not a whole number of steps"):
        script.main([*hybrid_only, "--transfer-tokens", str(step + 1)])
    with pytest.raises(SystemExit, match="recipe best has none"):
        script.main([*hybrid_only, "--recipe", "best", "--transfer-tokens", str(step)])


def test_smoke_filter_bands_reach_the_students_and_a_resume_must_keep_them(
    tmp_path, load_script, monkeypatch
):
    """--filter-bands and --filter-taps: the students' implicit filters get that many positional
    bands and taps (reported per student); a resume with other settings, fewer than one band or
    filters shorter than the training windows are refused before training."""
    from hyena_lite import models
    from hyena_lite.operator import decay_within

    built, taps_seen, convert = [], [], models.convert

    def recording_convert(*args, **kwargs):
        student = convert(*args, **kwargs)
        mixers = [m for m in models.layer_mixers(student) if hasattr(m, "operator")]
        built.append({m.operator.filter_fn.bands for m in mixers})
        taps_seen.append({m.operator.l_max for m in mixers})
        return student

    monkeypatch.setattr(models, "convert", recording_convert)
    script = load_script("smollm2_h200")
    out = tmp_path / "run"
    hybrid_only = ["run", "--smoke", "--models", "hybrid", "--out", str(out), "--no-progress"]
    script.main([*hybrid_only, "--filter-bands", "4"])
    results = json.loads((out / "smollm2_smoke.json").read_text())
    assert results["students"]["hybrid"]["hyena"] == {"emb_dim": 9}
    assert results["settings"]["filter_bands"] == 4 and built and all(b == {4} for b in built)
    with pytest.raises(SystemExit, match=r"Hyena settings \{'emb_dim': 9\}"):
        script.main(hybrid_only)
    with pytest.raises(SystemExit, match="give at least 1"):
        script.main([*hybrid_only, "--filter-bands", "0"])
    with pytest.raises(SystemExit, match="give at least 257"):
        script.main([*hybrid_only, "--filter-bands", "4", "--filter-taps", "32"])
    taps = ["--filter-bands", "4", "--filter-taps", "300", "--out", str(tmp_path / "taps")]
    script.main([*hybrid_only[:-3], *taps, "--no-progress"])
    results = json.loads((tmp_path / "taps" / "smollm2_smoke.json").read_text())
    assert results["students"]["hybrid"]["hyena"] == {"emb_dim": 9, "l_max": 300}
    assert built[-1] == {4} and taps_seen and taps_seen[-1] == {300}
    decay = ["--filter-bands", "4", "--filter-decay-context", "64", "--out", str(tmp_path / "d")]
    script.main([*hybrid_only[:-3], *decay, "--no-progress"])
    results = json.loads((tmp_path / "d" / "smollm2_smoke.json").read_text())
    positions = 320  # the smoke teacher's: the filters keep them, their windows decay within 64
    assert results["students"]["hybrid"]["hyena"] == {"emb_dim": 9} | decay_within(64, positions)
    assert taps_seen[-1] == {positions}
    with pytest.raises(SystemExit, match="up to the filters' 300 taps"):
        script.main([*hybrid_only, "--filter-taps", "300", "--filter-decay-context", "301"])
    first = ["--filter-bands", "4", "--first-token", "--out", str(tmp_path / "first")]
    guarded = ["--stream-weight", "0.5", "--broad-fraction", "0.2", "--broad-source", "both"]
    script.main([*hybrid_only[:-3], *first, *guarded, "--no-progress"])
    results = json.loads((tmp_path / "first" / "smollm2_smoke.json").read_text())
    hybrid = results["students"]["hybrid"]
    assert results["settings"]["broad_source"] == "both" and hybrid["data_mix"]["broad"] == 0.2
    assert hybrid["hyena"] == {"emb_dim": 9, "first_token": True}
    assert hybrid["stream_weight"] == 0.5
    logged = json.loads(next((tmp_path / "first").glob("hybrid/**/1-kd/log.json")).read_text())
    assert logged["config"]["context"]["options"] == {"ce_weight": 0.5, "stream_weight": 0.5}
    assert all(record["stream"] > 0 for record in logged["records"])
