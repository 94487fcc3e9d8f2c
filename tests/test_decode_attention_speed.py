"""scripts/decode_attention_speed.py runs end to end on a CPU with --smoke (tiny shapes, the split
kernel in Triton's interpreter) and writes every variant's row with its provenance, timing, floor
and agreement with the masked attention."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from hyena_lite.provenance import KEYS


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_smoke_run_times_every_variant_and_agrees_with_masked_attention(
    tmp_path: Path, run_smoke
) -> None:
    out = tmp_path / "attention.json"
    run_smoke("decode_attention_speed", "--smoke", "--blocks", "1", "--out", str(out))
    report = json.loads(out.read_text())
    assert set(KEYS) <= set(report)
    names = [row["variant"] for row in report["rows"]]
    chunks = ["split_64", "split_128", "split_256", "split_512", "split_1024"]
    assert names[:6] == ["sdpa", *chunks] and names[6].startswith("split_auto_")
    for row in report["rows"]:
        assert "error" not in row, row
        assert row["context"] == 100 and row["ms"] > 0 and row["floor_ratio"] > 0
        assert row["max_abs_diff"] < 1e-5
