"""Distillation data from the teacher: batched sampling into resumable shards, deduplication and
the row-by-row mix of corpus, samples and recall sequences, on the CPU with a tiny GPT-2 teacher."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2LMHeadModel

from hyena_lite import teacher_data as td
from hyena_lite.data import gpt2_tokenizer, iterate_batches, ordinary_tokens
from tests.tiny_models import save_tiny_gpt2


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return GPT2LMHeadModel.from_pretrained(save_tiny_gpt2(tmp_path_factory.mktemp("t"))).eval()


CORPUS = torch.arange(1000, 3000)


def test_sampling_is_batched_seeded_resumable_and_deduplicated(teacher, tokenizer, tmp_path):
    settings = td.SampleSettings(sequences=6, new_tokens=12, prompt_tokens=4, batch_size=4)
    made = td.teacher_samples(teacher, tokenizer, CORPUS, settings, tmp_path / "s", progress=False)
    assert made["shards"] == ["shard_00000.pt", "shard_00001.pt"]
    shard0, shard1 = (torch.load(tmp_path / "s" / name) for name in made["shards"])
    assert len(shard0) == len(shard1) == 4
    assert all(len(r) == 12 for r in shard0)  # bos prompts: 12 new tokens, the start token dropped
    assert all(
        len(r) == 16 and 1000 <= int(r[0]) < 3000 for r in shard1
    )  # 4 corpus tokens in front
    again = td.sample_shard(teacher, tokenizer, CORPUS, settings, 1)
    assert again == [r.tolist() for r in shard1]  # a shard is the same whenever it is made
    (tmp_path / "s" / "shard_00001.pt").unlink()  # a run stopped after its first shard resumes
    td.teacher_samples(teacher, tokenizer, CORPUS, settings, tmp_path / "s", progress=False)
    assert [r.tolist() for r in torch.load(tmp_path / "s" / "shard_00001.pt")] == again
    tokens, stats = td.load_samples(tmp_path / "s", eos=tokenizer.eos_token_id, min_tokens=1)
    assert stats["sequences_made"] == 8 and 1 <= stats["sequences_kept"] <= 8
    assert int((tokens == tokenizer.eos_token_id).sum()) == stats["sequences_kept"]
    with pytest.raises(ValueError, match="other settings"):
        td.teacher_samples(
            teacher,
            tokenizer,
            CORPUS,
            td.SampleSettings(sequences=6, temperature=0.5),
            tmp_path / "s",
            progress=False,
        )


def test_deduplicate_drops_repeats_and_short_samples():
    samples = [[1, 2, 3, 4], [1, 2, 3, 9], [5, 6], [7, 8, 9, 10]]
    assert td.deduplicate(samples, prefix=3, min_tokens=3) == [[1, 2, 3, 4], [7, 8, 9, 10]]
    assert td.deduplicate(samples, prefix=4, min_tokens=1) == samples


def test_mix_follows_the_fractions_and_resumes(tokenizer):
    vocab, start = ordinary_tokens(tokenizer)[:500], tokenizer.eos_token_id
    samples = torch.full((5000,), 7)
    corpus_only = td.mixed_batches(CORPUS, None, 0.0, 0.0, vocab, start, 4, 32, seed=3)
    plain = iterate_batches(CORPUS, 4, 32, seed=3)
    assert all(torch.equal(next(corpus_only), next(plain)) for _ in range(3))
    stream = td.mixed_batches(CORPUS, samples, 0.5, 0.25, vocab, start, 64, 32, seed=1)
    batches = [next(stream) for _ in range(4)]
    rows = torch.cat(batches)
    from_samples = (rows == 7).all(1)
    from_corpus = ((rows >= 1000) & (rows < 3000)).all(1)
    recall_rows = ~from_samples & ~from_corpus
    assert abs(from_samples.float().mean() - 0.5) < 0.1
    assert abs(recall_rows.float().mean() - 0.25) < 0.1
    assert all(
        int(r[0]) == start and set(r.tolist()) <= set(vocab.tolist()) | {start}
        for r in rows[recall_rows]
    )
    resumed = td.mixed_batches(CORPUS, samples, 0.5, 0.25, vocab, start, 64, 32, 1, start_step=2)
    assert torch.equal(next(resumed), batches[2])


def test_broad_rows_come_at_their_fraction_and_leave_the_rest_unchanged(tokenizer):
    vocab, start = ordinary_tokens(tokenizer)[:500], tokenizer.eos_token_id
    samples, broad = torch.full((5000,), 7), torch.full((5000,), 9)
    before = td.mixed_batches(CORPUS, samples, 0.5, 0.25, vocab, start, 64, 32, seed=1)
    zero = td.mixed_batches(CORPUS, samples, 0.5, 0.25, vocab, start, 64, 32, seed=1, broad=broad)
    assert all(torch.equal(next(before), next(zero)) for _ in range(2))  # fraction 0: as before
    stream = td.mixed_batches(
        CORPUS, samples, 0.25, 0.0, vocab, start, 64, 32, seed=1, broad=broad, broad_fraction=0.5
    )
    rows = torch.cat([next(stream) for _ in range(4)])
    assert abs((rows == 9).all(1).float().mean() - 0.5) < 0.1
    assert abs((rows == 7).all(1).float().mean() - 0.25) < 0.1
    with pytest.raises(ValueError, match="build it with `python -m hyena_lite data`"):
        next(td.mixed_batches(CORPUS, None, 0.0, 0.0, vocab, start, 2, 8, broad_fraction=0.5))


def test_recall_rows_repeat_what_they_hold(tokenizer):
    vocab = ordinary_tokens(tokenizer)  # 50k tokens: random rows would almost never repeat one
    for seed in range(3):
        row = td.recall_row(vocab, 0, 512, seed=seed).tolist()
        assert len(row) == 512 and row[0] == 0
        body = [t for t in row if t != 0]
        repeats = sum(t in set(row[:i]) for i, t in enumerate(row) if t != 0)
        assert repeats / len(body) > 0.3  # the second copy, and every queried key and its value


def test_bad_settings_say_what_is_wrong():
    with pytest.raises(ValueError, match="choose one of bos, corpus, mixed"):
        td.SampleSettings(prompts="chat")
    with pytest.raises(ValueError, match="temperature > 0"):
        td.SampleSettings(temperature=0)
    with pytest.raises(ValueError, match="sum to at most 1"):
        next(td.mixed_batches(CORPUS, None, 0.7, 0.4, torch.arange(5), 0, 2, 8))
    with pytest.raises(ValueError, match="needs at least one window"):
        next(td.mixed_batches(CORPUS, torch.arange(4), 0.5, 0.0, torch.arange(5), 0, 2, 8))


def test_missing_samples_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="sample the teacher first"):
        td.load_samples(tmp_path, eos=0)
    (tmp_path / "samples.json").write_text(json.dumps({"settings": {}, "shards": []}))
    with pytest.raises(ValueError, match="none of the 0 samples"):
        td.load_samples(tmp_path, eos=0)


def test_more_recall_rows_displace_every_source_alike():
    from hyena_lite import distill

    setup = distill.Setup(None, None, CORPUS, None, None, None, [0])
    mix = td.MixedSetup.from_setup(
        setup, sample_fraction=0.5, recall_fraction=0.1, broad_fraction=0.25
    )
    stage = mix.with_recall(0.25).data_mix()
    assert stage["recall"] == 0.25 and sum(stage.values()) == pytest.approx(1.0)
    before = mix.data_mix()
    for source in ("corpus", "teacher_samples", "broad"):  # each keeps its share of the rest
        assert stage[source] / 0.75 == pytest.approx(before[source] / 0.9)
    assert stage["corpus"] == pytest.approx(0.125)  # not 1 - 0.5 - 0.25 - 0.25 = 0
    only_recall = td.MixedSetup.from_setup(setup, recall_fraction=1.0).with_recall(0.5)
    assert only_recall.data_mix() == {"corpus": 0.5, "teacher_samples": 0.0, "recall": 0.5}
    with pytest.raises(ValueError, match="recall_fraction must be in"):
        mix.with_recall(1.5)


def test_scaled_shares_that_fill_every_row_still_mix(tokenizer):
    from hyena_lite import distill

    vocab, start = ordinary_tokens(tokenizer)[:500], tokenizer.eos_token_id
    setup = distill.Setup(None, None, CORPUS, None, None, None, [0])
    mix = td.MixedSetup.from_setup(
        setup, sample_fraction=0.1, recall_fraction=0.1, broad_fraction=0.8
    )
    full = mix.with_recall(0.2)  # no corpus left; the shares' sum rounds to just above 1
    assert full.sample_fraction + full.recall_fraction + full.broad_fraction > 1
    fractions = (full.sample_fraction, full.recall_fraction, full.broad_fraction)
    samples, broad = torch.full((5000,), 7), torch.full((5000,), 9)
    rows = next(
        td.mixed_batches(
            CORPUS,
            samples,
            *fractions[:2],
            vocab,
            start,
            64,
            32,
            broad=broad,
            broad_fraction=fractions[2],
        )
    )
    assert not ((rows >= 1000) & (rows < 3000)).all(1).any()  # no corpus rows


def test_passes_count_how_often_a_budget_goes_over_each_source():
    from hyena_lite import distill

    setup = distill.Setup(None, None, torch.arange(1000), None, None, None, [0])
    mix = td.MixedSetup.from_setup(
        setup,
        samples=torch.arange(100),
        sample_fraction=0.5,
        recall_fraction=0.1,
        broad=torch.arange(400),
        broad_fraction=0.2,
    )
    passes = mix.passes(2000)  # corpus 0.2: 400 of 1000; samples 1000 of 100; broad 400 of 400
    assert passes == pytest.approx({"corpus": 0.4, "teacher_samples": 10.0, "broad": 1.0})
    assert td.MixedSetup.from_setup(setup).passes(500) == {"corpus": 0.5}  # no samples, no broad
