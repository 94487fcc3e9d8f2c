"""The peak-memory script (scripts/gpt2_peak_memory.py) runs every case on the CPU at a tiny GPT-2
shape."""

from __future__ import annotations

import json

import pytest


def test_every_case_runs_on_the_cpu_and_the_report_is_written(tmp_path, load_script):
    script = load_script("gpt2_peak_memory")
    out = tmp_path / "peak.json"
    tiny = [
        "--device",
        "cpu",
        "--layers",
        "1",
        "--width",
        "16",
        "--heads",
        "2",
        "--vocab",
        "37",
        "--seq-len",
        "16",
    ]
    report = script.main(
        tiny
        + ["--batch-size", "4", "--micro-batches", "4,2", "--eval-batches", "2", "--json", str(out)]
    )
    assert set(report["cases"]) == {
        "kd_micro4",
        "kd_micro2",
        "ce_micro4",
        "ce_micro2",
        "eval_batch2",
    }
    assert all(
        row["peak_allocated_gib"] is None and row["seconds"] > 0 for row in report["cases"].values()
    )
    assert json.loads(out.read_text()) == report
    with pytest.raises(ValueError, match="do not divide the batch size 4"):
        script.main(tiny + ["--batch-size", "4", "--micro-batches", "3"])
