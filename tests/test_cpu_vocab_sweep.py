"""scripts/cpu_vocab_sweep.py at toy sizes on the CPU: worker processes, what each variant records,
and how many steps a variant gets from the measured CPU rates."""

from __future__ import annotations

import json


def test_steps_follow_the_cpu_rate_of_the_vocabulary(load_script):
    sweep = load_script("cpu_vocab_sweep")
    rates = {"tokens_per_second": {"50257": 1024.0, "4096": 4096.0}}
    full, small = sweep.VARIANTS["v50257-tied-copy0"], sweep.VARIANTS["v4096-untied-copy50-b8"]
    assert sweep.steps_for(full, rates, 8, 256) == 8 * 60 * 1024 // (16 * 256)
    assert sweep.steps_for(small, rates, 8, 256) == 8 * 60 * 4096 // (8 * 256)


def test_a_tiny_run_records_every_variant_with_its_probes(load_script, tmp_path):
    sweep = load_script("cpu_vocab_sweep")
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"tokens_per_second": {"50257": 1.0, "8192": 2.0, "4096": 3.0}}))
    out = tmp_path / "sweep.json"
    names = "v50257-tied-copy0,v4096-untied-copy50"
    argv = ["run", "--tiny", "--out", str(out), "--rates", str(rates), "--variants", names]
    assert sweep.main([*argv, "--parallel", "2", "--threads", "1", "--copy-n", "4"]) == 0
    report = json.loads(out.read_text())
    assert report["tiny"] and report["hardware"] and report["cpu_rates"]["tokens_per_second"]
    full, small = report["variants"]["v50257-tied-copy0"], report["variants"]["v4096-untied-copy50"]
    assert (full["vocab_size"], small["vocab_size"]) == (50257, 4096)
    assert full["head_is_embedding"] and not small["head_is_embedding"]
    for result in (full, small):
        assert len(result["during_training"]) == sweep.PROBES
        assert set(result["copy_accuracy"]) == {"32", "64", "128"}
        assert 0 < result["bits_per_byte"] < 20 and len(result["length_curve"]["mean_nll"]) >= 4
    assert small["profile"]["teacher_copy_fraction"] == 0.5
