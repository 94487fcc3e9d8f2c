"""The one provenance record: its keys, the commit override, and every committed results file."""

import json
import shlex
import subprocess

from hyena_lite import provenance
from hyena_lite.paths import results_dir

RESULTS = results_dir()


def test_record_has_the_schema_keys_and_the_command(monkeypatch) -> None:
    monkeypatch.setenv("HYENA_LITE_GIT_COMMIT", "abc123")
    record = provenance.provenance("python -m hyena_lite x")
    assert tuple(record) == provenance.KEYS
    assert record["command"] == "python -m hyena_lite x" and record["commit"] == "abc123"
    assert record["hardware"] and record["created"].endswith("+00:00")


def test_commit_is_marked_dirty_where_tracked_files_differ_from_it(monkeypatch) -> None:
    """A tree copied over an older .git (as on the GPU device) names that commit plus -dirty; a
    clean tree its commit alone; no git, None."""
    monkeypatch.delenv("HYENA_LITE_GIT_COMMIT", raising=False)
    answers = {"rev-parse": "0123abc\n", "status": " M hyena_lite/longconv.py\n"}

    def fake_git(args, cwd):
        return subprocess.CompletedProcess(args, 0, stdout=answers[args[0]], stderr="")

    monkeypatch.setattr(provenance, "_git", fake_git)
    assert provenance.git_commit() == "0123abc-dirty"
    answers["status"] = ""
    assert provenance.git_commit() == "0123abc"
    monkeypatch.setattr(provenance, "_git", lambda args, cwd: None)
    assert provenance.git_commit() is None


def test_command_line_spells_out_every_option() -> None:
    options = {"what": ["a", "b"], "dry_run": True, "quiet": False, "out": None, "n": 3}
    line = provenance.command_line(["python", "-m", "hyena_lite", "x"], options)
    assert shlex.split(line)[4:] == ["--what", "a", "b", "--dry-run", "--n", "3"]
    line = provenance.command_line(["x"], {"model": ["a=1", "b"]}, repeat_flags=True)
    assert shlex.split(line) == ["x", "--model", "a=1", "--model", "b"]


def test_committed_results_use_the_one_schema() -> None:
    files = sorted(RESULTS.glob("*.json"))
    assert files, f"no results files in {RESULTS}"
    for path in files:
        data = json.loads(path.read_text())
        records = [data] + [data[k] for k in ("meta", "environment") if k in data]
        text = path.read_text()
        assert '"git_commit"' not in text, path.name
        assert any("commit" in r for r in records), path.name
        for record in records:
            if "hardware" in record:
                assert isinstance(record["hardware"], str), path.name
            assert "torch" not in record, f"{path.name}: versions belong under 'versions'"
