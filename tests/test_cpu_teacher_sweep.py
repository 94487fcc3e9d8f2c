"""scripts/cpu_teacher_sweep.py at toy sizes on the CPU: what it records, a failing
variant, resuming."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def sweep(load_script, monkeypatch):
    module = load_script("cpu_teacher_sweep")
    monkeypatch.setattr(
        module,
        "VARIANTS",
        {
            "baseline": {},
            "copy50-rand100": {"teacher_copy_fraction": 0.5, "teacher_copy_random": 1.0},
            "broken": {"teacher_copy_fraction": 2.0},
        },
    )
    return module


def test_the_sweep_scores_each_variant_records_failures_and_skips_what_is_done(
    sweep, tmp_path, capsys
):
    out = tmp_path / "sweep.json"
    assert sweep.main(["--out", str(out), "--tiny", "--device", "cpu", "--copy-n", "2"]) == 1
    report = json.loads(out.read_text())
    assert (
        report["tiny"]
        and report["device"] == "cpu"
        and report["hardware"]
        and "--tiny" in report["command"]
    )
    done = report["variants"]["copy50-rand100"]
    assert done["profile"]["teacher_copy_fraction"] == 0.5 and done["profile"]["seq_len"] == 32
    assert (
        done["tokens"] == 256
        and done["wall_seconds"] > 0
        and set(done["copy_accuracy"]) == {"32", "64", "128"}
    )
    assert set(done["validation_perplexity"]) == {"shakespeare", "austen", "bible"}
    assert all(v["model"] > 1 and v["unigram"] > 1 for v in done["validation_perplexity"].values())
    curve = done["length_curve"]
    assert len(curve["position"]) == len(curve["mean_nll"]) > 1 and curve["position"][-1] == 31
    assert "teacher_copy_fraction must be a fraction" in report["variants"]["broken"]["error"]
    assert "failed: broken" in capsys.readouterr().out

    assert (
        sweep.main(
            ["--out", str(out), "--tiny", "--device", "cpu", "--variants", "baseline,broken"]
        )
        == 1
    )
    printed = capsys.readouterr().out
    assert (
        "baseline: done before, skipped" in printed and "broken: {" in printed
    )  # a failed variant is retried
    with pytest.raises(SystemExit, match="holds a tiny sweep"):
        sweep.main(["--out", str(out), "--device", "cpu"])


def test_unknown_variants_are_named(sweep, tmp_path):
    with pytest.raises(SystemExit):
        sweep.main(["--out", str(tmp_path / "x.json"), "--variants", "nope"])
