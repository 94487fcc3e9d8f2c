"""scripts/mlp_step_speed.py runs end to end on a CPU with --smoke (tiny shapes, the Triton kernel
in Triton's interpreter) and writes every variant's row with its provenance, timing and agreement
with the eager chain."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyena_lite.provenance import KEYS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_smoke_run_times_every_variant_and_agrees_with_the_eager_chain(tmp_path: Path) -> None:
    out = tmp_path / "mlp.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "scripts/mlp_step_speed.py", "--smoke", "--batches", "1", "--blocks", "1"]
        + ["--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(KEYS) <= set(report)
    names = [row["variant"] for row in report["rows"]]
    assert names == ["torch", "triton_8", "triton_16", "triton_32", "triton_64", "triton_auto_64"]
    for row in report["rows"]:
        assert "error" not in row, row
        assert row["ms"] > 0 and row["iqr_ms"] >= 0 and row["floor_ratio"] > 0
        assert row["max_abs_diff"] < 1e-5
