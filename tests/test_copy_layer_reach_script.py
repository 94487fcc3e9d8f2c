"""scripts/copy_layer_reach.py on the smoke profile's teacher: every set is measured, the file
keeps the other teachers' keys, and bad flags are refused."""

from __future__ import annotations

import json

import pytest
import torch

from tests.tiny_models import KnownAttention


def test_a_smoke_run_records_every_set_beside_the_other_teachers(load_script, tmp_path):
    reach = load_script("copy_layer_reach")
    out = tmp_path / "reach.json"
    out.write_text(json.dumps({"mini-gpt2": {"full": 0.5}}))
    reach.main(["--smoke", "--window", "4", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["mini-gpt2"] == {"full": 0.5} and report["commit"] is not None
    smoke = report["smoke"]
    assert smoke["settings"]["window"] == 4 and smoke["layers"] == 2
    assert set(smoke["single_global"]) == {"0", "1"}
    assert [len(step["global_layers"]) for step in smoke["greedy"]] == [1, 2]
    assert smoke["greedy"][-1]["copy_accuracy"] == smoke["full"]  # every layer global
    assert [t["k"] for t in smoke["top_k_by_induction"]] == [1, 2]
    sets = [p["global_layers"] for p in smoke["perplexity"]]
    assert sets[:2] == [None, []] and all(p["ppl"] > 1 for p in smoke["perplexity"])
    assert set(smoke["drop_one"]) == {"0", "1"} and sorted(smoke["layers_by_need"]) == [0, 1]
    for accuracy, log_prob in smoke["copy_by_set"].values():
        assert 0.0 <= accuracy <= 1.0 and log_prob < 0


class NoisyCopier(KnownAttention):
    """A perfect copier whose logits get fixed noise: it copies some tokens and misses others."""

    def forward(self, input_ids, **kwargs):
        out = super().forward(input_ids, **kwargs)
        noise = torch.rand(out.logits.shape, generator=torch.Generator().manual_seed(0))
        out.logits = out.logits + 1.5 * noise
        return out


def test_the_scripts_copy_accuracy_is_the_librarys(load_script):
    from hyena_lite import recall
    from hyena_lite.data import gpt2_tokenizer

    reach = load_script("copy_layer_reach")
    tokenizer = gpt2_tokenizer()
    model = NoisyCopier(len(tokenizer))
    accuracy, log_prob = reach.copy_scores(model, tokenizer, n=3)
    assert 0.05 < accuracy < 0.95 and log_prob < 0
    assert accuracy == pytest.approx(recall.copy_accuracy(model, tokenizer, n=3), abs=1e-12)


@pytest.mark.parametrize("flag", ["--window", "--n", "--threads"])
def test_counts_below_one_are_refused(load_script, tmp_path, flag):
    reach = load_script("copy_layer_reach")
    with pytest.raises(SystemExit):
        reach.main([flag, "0", "--json", str(tmp_path / "x.json")])


def test_a_negative_sink_is_refused(load_script, tmp_path):
    reach = load_script("copy_layer_reach")
    with pytest.raises(SystemExit):
        reach.main(["--sink", "-1", "--json", str(tmp_path / "x.json")])
