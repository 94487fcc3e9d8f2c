"""scripts/teacher_rope_probe.py at toy sizes on the CPU: both architectures train, are probed
during training and scored at the end; a bad variant name is refused."""

from __future__ import annotations

import json

import pytest


def test_a_tiny_run_records_both_architectures(load_script, tmp_path):
    probe = load_script("teacher_rope_probe")
    out = tmp_path / "rope.json"
    probe.main(
        [
            "--tiny",
            "--steps",
            "4",
            "--probe-every",
            "2",
            "--variants",
            "gpt2,llama-s128",
            "--tied",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert report["hardware"] and report["settings"]["steps"] == 4
    gpt2, llama = report["variants"]["gpt2"], report["variants"]["llama-s128"]
    assert (gpt2["architecture"], llama["architecture"]) == ("gpt2", "llama")
    for result in (gpt2, llama):
        assert [h["step"] for h in result["history"]] == [2, 4]
        assert set(result["copy"]) == {"32", "64", "128"} and result["tied"]
        assert 0 < result["val_bits_per_byte"] < 20 and result["tokens_per_second"] > 0


def test_an_unknown_variant_is_refused(load_script, tmp_path):
    probe = load_script("teacher_rope_probe")
    with pytest.raises(SystemExit):
        probe.main(["--variants", "mamba", "--out", str(tmp_path / "x.json")])
