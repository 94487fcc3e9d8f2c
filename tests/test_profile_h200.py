"""scripts/profile_h200.py runs every part end to end on a CPU with --smoke (tiny shapes, CPU
activities only, about 30 s) and writes one small JSON file with its provenance, per-call numbers
and non-empty kernel tables; bad --parts are refused."""

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
PER_CALL = ("wall_ms", "host_us_per_call", "busy_us_per_call", "syncs_per_call", "host_sync")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "scripts/profile_h200.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _check_workload(entry: dict, calls: int) -> None:
    assert "error" not in entry, entry.get("error")
    assert set(PER_CALL) <= set(entry) and entry["calls_profiled"] == calls
    assert entry["wall_ms"] > 0 and entry["host_us_per_call"] > 0 and entry["busy_us_per_call"] > 0
    table = entry["top_kernels"]
    assert 0 < len(table) <= 20
    assert all(row["name"] and len(row["name"]) <= 120 and row["calls"] >= 1 for row in table)
    assert [row["total_us"] for row in table] == sorted(
        (row["total_us"] for row in table), reverse=True
    )
    assert 0 < sum(row["pct"] for row in table) <= 100.01
    assert entry["busy_fraction_of_wall"] > 0
    host = entry["top_host_ops"]
    assert 0 < len(host) <= 10 and all(row["self_us_per_call"] >= 0 for row in host)


def test_smoke_profiles_every_part(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    done = _run("--smoke", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.stat().st_size < 200_000
    result = json.loads(out.read_text())
    assert set(KEYS) <= set(result) and "--smoke" in result["command"]
    assert result["parts"] == ["decode", "operator", "kd"] and result["skipped"] == []
    assert result["time_source"].startswith("cpu")

    workloads = result["decode"]["workloads"]
    assert list(workloads) == ["student_eager_graph", "teacher_eager_graph", "student_eager"]
    for entry in workloads.values():
        _check_workload(entry, 2)
        assert entry["read_mb"] > 0 and entry["graph"] is False  # no CUDA graph on a CPU

    rows = result["operator"]["rows"]
    assert [row["L"] for row in rows] == [64, 128]
    for row in rows:
        for name in ("hyena_forward", "attn_forward", "hyena_fwdbwd", "attn_fwdbwd"):
            _check_workload(row[name], 2)
        ranges = row["hyena_forward"]["ranges"]
        assert set(ranges) == {
            "hyena.filter_fn",
            "hyena.in_proj",
            "hyena.short_filter",
            "hyena.out_proj",
        }
        assert all(
            r["occurrences_per_call"] >= 1 and r["host_us_per_call"] > 0 for r in ranges.values()
        )

    kd = result["kd"]
    _check_workload({**kd, "wall_ms": kd["step_ms"]}, 1)
    assert kd["tokens_per_s"] > 0 and kd["tokens_per_step"] == 2 * 64
    assert kd["student_parameters"] > 0 and kd["teacher_parameters"] > 0
    phases = kd["phases"]
    assert list(phases) == [
        "kd.teacher_forward",
        "kd.student_forward",
        "kd.loss",
        "kd.backward",
        "kd.checks",
        "kd.optimizer",
    ]
    for name, phase in phases.items():
        assert phase["wall_ms"] > 0 and phase["host_ms_profiled"] > 0, name
    # every phase but the checks (a few reductions) launches work; the forward passes the most
    assert all(phases[n]["top_kernels"] for n in phases if n != "kd.checks")
    assert phases["kd.student_forward"]["kernels_per_step"] > 0
    assert sum(p["wall_ms"] for p in phases.values()) <= kd["synced_step_ms"] * 1.05


@pytest.mark.parametrize("parts", ["decode,bogus", ","])
def test_unknown_parts_are_refused(tmp_path: Path, parts: str) -> None:
    done = _run("--smoke", "--parts", parts, "--out", str(tmp_path / "p.json"))
    assert done.returncode == 2 and "give a comma-separated subset of" in done.stderr
    assert not (tmp_path / "p.json").exists()


def test_union_counts_overlapping_kernels_once(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("profile_h200", ROOT / "scripts/profile_h200.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "profile_h200", module)  # its dataclasses look it up there
    spec.loader.exec_module(module)
    union = module._union_us
    assert union([]) == 0.0
    assert union([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)]) == 4.0  # 0-3 and 5-6
    assert union([(4.0, 5.0), (0.0, 10.0), (2.0, 3.0)]) == 10.0  # nested, unsorted
