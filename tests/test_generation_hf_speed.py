"""scripts/hf_generate_speed.py measures generate() beside the library's decoder on a tiny student
and merges its result into a results file under one key, leaving the file's other keys alone."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--layers", "1", "--width", "32", "--heads", "2", "--context", "16", "--new-tokens", "4"]
TINY += ["--repeats", "1", "--threads", "1", "--device", "cpu"]


def _script():
    spec = importlib.util.spec_from_file_location(
        "hf_generate_speed", ROOT / "scripts/hf_generate_speed.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_measured_result_is_merged_under_its_key_and_other_keys_are_kept(tmp_path):
    script = _script()
    target = tmp_path / "generation_h200.json"
    others = {"command": "python3 scripts/speed_h200.py", "rows": [{"context": 8192}]}
    target.write_text(json.dumps(others))
    result = script.main([*TINY, "--json", str(tmp_path / "hf.json"), "--merge-into", str(target)])
    assert result["tokens_equal"] and result["settings"]["context"] == 16
    assert "merge_into" not in result["settings"]
    merged = json.loads(target.read_text())
    assert merged == {**others, script.MERGE_KEY: json.loads((tmp_path / "hf.json").read_text())}

    later = tmp_path / "later.json"  # after a device run: merge the file it wrote, measure nothing
    later.write_text(json.dumps({"fit_s": 1.5}))
    script.main(["--from-json", str(tmp_path / "hf.json"), "--merge-into", str(later)])
    assert json.loads(later.read_text()) == {
        "fit_s": 1.5,
        script.MERGE_KEY: merged[script.MERGE_KEY],
    }


def test_merging_refuses_what_it_cannot_merge(tmp_path, capsys):
    script = _script()
    with pytest.raises(SystemExit):
        script.main([*TINY, "--merge-into", str(tmp_path / "missing.json")])
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main(["--from-json", str(tmp_path / "any.json")])
    assert "give --merge-into too" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"rows": []}))
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="not one of scripts/hf_generate_speed.py"):
        script.merge_result({"rows": []}, tmp_path / "list.json")
    with pytest.raises(ValueError, match="holds no JSON object"):
        script.merge_result({"library": {}, "generate": {}, "settings": {}}, tmp_path / "list.json")
