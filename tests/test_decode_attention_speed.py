"""scripts/decode_attention_speed.py runs end to end on a CPU with --smoke (tiny shapes, the split
kernel in Triton's interpreter) and writes every variant's row with its provenance, timing, floor
and agreement with the masked attention."""

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
def test_smoke_run_times_every_variant_and_agrees_with_masked_attention(tmp_path: Path) -> None:
    out = tmp_path / "attention.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "scripts/decode_attention_speed.py", "--smoke", "--blocks", "1"]
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
    chunks = ["split_64", "split_128", "split_256", "split_512", "split_1024"]
    assert names[:6] == ["sdpa", *chunks] and names[6].startswith("split_auto_")
    for row in report["rows"]:
        assert "error" not in row, row
        assert row["context"] == 100 and row["ms"] > 0 and row["floor_ratio"] > 0
        assert row["max_abs_diff"] < 1e-5
