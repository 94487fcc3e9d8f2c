"""scripts/mlp_step_speed.py runs end to end on a CPU with --smoke (tiny shapes, the Triton kernel
in Triton's interpreter) and writes every variant's row with its provenance, timing and agreement
with the eager chain."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from hyena_lite.provenance import KEYS


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_smoke_run_times_every_variant_and_agrees_with_the_eager_chain(
    tmp_path: Path, run_smoke
) -> None:
    out = tmp_path / "mlp.json"
    run_smoke("mlp_step_speed", "--smoke", "--batches", "1", "--blocks", "1", "--out", str(out))
    report = json.loads(out.read_text())
    assert set(KEYS) <= set(report)
    names = [row["variant"] for row in report["rows"]]
    assert names == ["torch", "triton_8", "triton_16", "triton_32", "triton_64", "triton_auto_64"]
    for row in report["rows"]:
        assert "error" not in row, row
        assert row["ms"] > 0 and row["iqr_ms"] >= 0 and row["floor_ratio"] > 0
        assert row["max_abs_diff"] < 1e-5
