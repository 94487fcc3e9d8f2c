"""The mini teacher's pre-training data (induction sequences mixed into corpus windows) and its
resumption after a crash or a stop signal."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from hyena_lite import get_profile, mini_teacher, teachers
from hyena_lite.data import iterate_batches
from hyena_lite.training import TrainingStopped

TINY = get_profile("smoke").replace(
    seq_len=32,
    batch_size=2,
    teacher_layers=1,
    teacher_width=32,
    teacher_heads=2,
    teacher_tokens=256,
    eval_tokens=256,
)
START = 50256
TOKENS = torch.arange(
    100, 10_100
)  # a stand-in corpus that counts up by one: its spans are easy to recognise
VOCAB = torch.arange(100, 50_000)
PRETRAINING_BATCHES = teachers.pretraining_batches


def batches(profile, start=0, n=20):
    stream = teachers.pretraining_batches(TOKENS, profile, VOCAB, START, start)
    return [next(stream) for _ in range(n)]


def is_induction(row: torch.Tensor) -> bool:
    """Whether a row is [START, s, s, ...] for some span s of MIN_SPAN to seq_len // 2 tokens."""
    body = row[1:]
    return row[0] == START and any(
        torch.equal(body[p:], body[:-p]) for p in range(mini_teacher.MIN_SPAN, len(row) // 2 + 1)
    )


def test_without_induction_data_the_batches_are_the_plain_corpus_windows():
    plain = list(iterate_batches(TOKENS, TINY.batch_size, TINY.seq_len, seed=TINY.seed, steps=20))
    assert all(torch.equal(a, b) for a, b in zip(batches(TINY), plain, strict=True))


def test_a_fraction_of_rows_repeat_a_span_from_the_corpus_or_of_random_tokens():
    profile = TINY.replace(batch_size=8, teacher_copy_fraction=0.5, teacher_copy_random=0.5)
    rows = torch.cat(batches(profile, n=50))
    induction = [row for row in rows if is_induction(row)]
    assert 0.4 < len(induction) / len(rows) < 0.6
    from_corpus = [
        row
        for row in induction
        if (row[2 : mini_teacher.MIN_SPAN + 1] - row[1 : mini_teacher.MIN_SPAN] == 1).all()
    ]
    assert 0.35 < len(from_corpus) / len(induction) < 0.65
    assert all(torch.isin(row[1:], VOCAB).all() for row in induction)
    assert max(row[1:].max() for row in induction) > TOKENS.max(), (
        "random spans draw from all of VOCAB"
    )
    everything = TINY.replace(teacher_copy_fraction=1.0)
    assert all(is_induction(row) for row in torch.cat(batches(everything)))
    assert not any(is_induction(row) for row in torch.cat(batches(TINY)))


def test_batch_k_depends_only_on_the_seed_and_k():
    profile = TINY.replace(teacher_copy_fraction=0.5, teacher_copy_random=0.5)
    assert all(
        torch.equal(a, b)
        for a, b in zip(batches(profile, start=7, n=5), batches(profile, n=12)[7:], strict=True)
    )
    other = batches(profile.replace(seed=1), n=12)
    assert not all(torch.equal(a, b) for a, b in zip(other, batches(profile, n=12), strict=True))


def test_induction_data_is_part_of_the_cache_identity_and_its_fractions_are_checked():
    mixed = TINY.replace(teacher_copy_fraction=0.25)
    assert teachers.mini_gpt2_dir(mixed) != teachers.mini_gpt2_dir(TINY)
    assert teachers.mini_gpt2_dir(mixed) != teachers.mini_gpt2_dir(
        mixed.replace(teacher_copy_random=0.5)
    )
    assert teachers.mini_gpt2_dir(TINY.replace(teacher_copy_random=0.5)) == teachers.mini_gpt2_dir(
        TINY
    )
    with pytest.raises(
        ValueError, match=r"teacher_copy_fraction must be a fraction in \[0, 1\], got 1.5"
    ):
        teachers.mini_gpt2_dir(TINY.replace(teacher_copy_fraction=1.5))
    with pytest.raises(ValueError, match=r"seq_len >= 9"):
        teachers.pretraining_batches(
            TOKENS, TINY.replace(seq_len=8, teacher_copy_fraction=0.1), VOCAB, START
        ).__next__()


def test_the_pretraining_of_the_cpu_profile_checkpoints_every_5_percent():
    config = teachers.mini_gpt2_train_config(get_profile("cpu"))
    assert 0 < config.save_every <= config.steps // 20


PROFILE = TINY.replace(teacher_copy_fraction=0.5, teacher_copy_random=0.5)


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The weights of a TINY teacher with induction data, pre-trained without interruption."""
    model, _ = teachers.pretrain_mini_gpt2(
        PROFILE, tmp_path_factory.mktemp("uninterrupted"), progress=False
    )
    return state(model)


def run_with(monkeypatch, interrupt):
    """Make pre-training call interrupt(k) before it draws batch k; record each `start` it is
    asked for."""
    starts = []

    def watched(tokens, profile, vocab, start_token, start=0):
        starts.append(start)
        for k, batch in enumerate(
            PRETRAINING_BATCHES(tokens, profile, vocab, start_token, start), start=start
        ):
            interrupt(k)
            yield batch

    monkeypatch.setattr(mini_teacher, "pretraining_batches", watched)
    return starts


def test_a_crashed_pretraining_resumes_from_its_last_checkpoint_to_the_same_weights(
    uninterrupted, monkeypatch, tmp_path
):
    def crash(k):
        if k == 3:
            raise RuntimeError("killed")

    run_with(monkeypatch, crash)
    with pytest.raises(RuntimeError, match="killed"):
        teachers.pretrain_mini_gpt2(PROFILE, tmp_path, progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and not (tmp_path / "model").exists()
    resumed = run_with(monkeypatch, lambda k: None)
    model, _ = teachers.pretrain_mini_gpt2(PROFILE, tmp_path, progress=False)
    assert resumed == [3], "the second run starts at the batch after the last checkpoint"
    # the profile's teacher: its trimmed vocabulary and untied head
    assert model.config.vocab_size == PROFILE.teacher_vocab and not PROFILE.teacher_tied
    assert model.lm_head.weight is not model.transformer.wte.weight
    assert all(torch.equal(v, uninterrupted[k]) for k, v in state(model).items())


def test_a_signalled_pretraining_stops_with_a_checkpoint_and_resumes_to_the_same_weights(
    uninterrupted, monkeypatch, tmp_path
):
    def terminate(k):
        if k == 1:
            os.kill(
                os.getpid(), signal.SIGTERM
            )  # as a time limit would: the loop stops after this step

    run_with(monkeypatch, terminate)
    with pytest.raises(TrainingStopped, match="after step 2 of 4"):
        teachers.pretrain_mini_gpt2(PROFILE, tmp_path, progress=False)
    resumed = run_with(monkeypatch, lambda k: None)
    model, _ = teachers.pretrain_mini_gpt2(PROFILE, tmp_path, progress=False)
    assert resumed == [2]
    assert all(torch.equal(v, uninterrupted[k]) for k, v in state(model).items())


def test_the_cpu_teacher_pretrains_with_a_stable_phase_and_bf16_where_the_cpu_is_fast(monkeypatch):
    from hyena_lite import mini_teacher

    profile = get_profile("cpu")
    for fast in (True, False):
        monkeypatch.setattr(mini_teacher, "cpu_bf16_is_fast", lambda fast=fast: fast)
        config = mini_teacher.mini_gpt2_train_config(profile)
        assert config.decay_fraction == profile.teacher_decay_fraction == 0.2
        assert config.mixed_precision == ("bf16" if fast else "auto")
        assert config.seq_len == 128 and config.batch_size == 32 and config.steps == 2_400
