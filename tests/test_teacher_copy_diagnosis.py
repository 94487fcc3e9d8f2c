"""scripts/teacher_copy_diagnosis.py: its probe sequences are the library's, its induction
sequences have the shapes it promises, and a toy variant trains and is scored."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hyena_lite import probes


@pytest.fixture
def diagnosis(load_script):
    return load_script("teacher_copy_diagnosis")


def test_its_copy_sequences_are_the_probes(diagnosis) -> None:
    ordinary = torch.arange(diagnosis.EOS)
    ids, _ = probes.copy_batch(ordinary, diagnosis.EOS, length=12, n=3, seed=0)
    assert torch.equal(diagnosis.copy_ids(ordinary, 12, 3, seed=0), ids)


def test_induction_sequences_repeat_their_span(diagnosis) -> None:
    train = torch.arange(1000, dtype=torch.int32)
    v = {**diagnosis.DEFAULTS, "seq": 40, "rand": 1.0, "sub": 64, "min_span": 8, "max_span": 8}
    pool = diagnosis.token_pool(train, v)
    permutation = torch.randperm(diagnosis.EOS, generator=torch.Generator().manual_seed(7))
    assert torch.equal(pool, permutation[:64])
    repeated = diagnosis.induction_sequence(np.random.default_rng(0), train, pool, v)
    assert len(repeated) == 40 and repeated[0] == diagnosis.EOS
    assert torch.equal(repeated[1:9], repeated[9:17]) and set(repeated[1:].tolist()) <= set(
        pool.tolist()
    )
    two = diagnosis.induction_sequence(
        np.random.default_rng(0), train, pool, {**v, "two_copies": 1}
    )
    assert len(two) == 40 and torch.equal(two[1:9], two[9:17])
    assert torch.equal(two[18:], two[17:-1] + 1)  # then a corpus window (consecutive ids here)


def test_the_top_pool_is_the_most_frequent_tokens_of_the_train_split(diagnosis) -> None:
    train = torch.tensor(
        [5, 5, 5, 9, 9, 2, diagnosis.EOS, diagnosis.EOS, diagnosis.EOS, diagnosis.EOS]
    )
    v = {**diagnosis.DEFAULTS, "top": 2}
    assert diagnosis.token_pool(train, v).tolist() == [5, 9]


def test_a_toy_variant_is_trained_and_scored(diagnosis, tmp_path) -> None:
    torch.save(torch.randint(0, 500, (5000,), dtype=torch.int32), tmp_path / "train.pt")
    torch.save(torch.randint(0, 500, (2000,), dtype=torch.int32), tmp_path / "validation.pt")
    toy = {"copy": 1, "rand": 1, "sub": 64, "two_copies": 1, "width": 16, "layers": 1}
    toy |= {"heads": 2, "seq": 20, "batch": 2, "tokens": 320, "probe_len": 8, "tie": 0}
    toy |= {"history_lens": [8], "history_n": 4}
    (tmp_path / "v.json").write_text(json.dumps({"toy": toy}))
    out = tmp_path / "r.json"
    args = ["run", "--dir", str(tmp_path), "--variants", str(tmp_path / "v.json")]
    assert diagnosis.main([*args, "--out", str(out)]) == 0
    result = json.loads(out.read_text())["toy"]
    assert result["steps"] == 8 and len(result["history"]) == 8
    assert len(result["val_nll_by_position_bin"]) == 5  # [0,2) [2,4) [4,8) [8,16) [16,19)
    assert 0.0 <= result["copy_all"] <= 1.0
    assert list(result["copy_subset_by_length"]) == ["32", "64"]  # 128 exceeds the pool of 64
    assert {"seconds", "copy_subset_8"} <= set(result["history"][0])


def test_an_unknown_field_is_refused(diagnosis) -> None:
    with pytest.raises(ValueError, match="unknown variant fields"):
        diagnosis.train_and_score({"colour": 1}, torch.zeros(10), torch.zeros(10), "cpu")
