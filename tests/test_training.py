"""Tests of the training loop: schedule, learning, exact resume, skipping, divergence, subsets."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from tiny_models import random_gpt2
from transformers import GPT2LMHeadModel

from hyena_lite.training import TrainConfig, TrainingDiverged, TrainingStopped, lr_factor, train

VOCAB, SEQ, BATCH = 50, 16, 4


def tiny_gpt2(seed: int = 0, dropout: float = 0.1) -> GPT2LMHeadModel:
    return random_gpt2(VOCAB, SEQ, seed=seed, dropout=dropout)


def batches_from(start: int):
    """A deterministic stream of batches with a learnable pattern (each token is the previous +
    1)."""
    index = start
    while True:
        g = torch.Generator().manual_seed(1000 + index)
        first = torch.randint(0, VOCAB, (BATCH, 1), generator=g)
        yield (first + torch.arange(SEQ)) % VOCAB
        index += 1


def lm_loss(model, batch):
    out = model(input_ids=batch, labels=batch)
    return out.loss, {"ppl": math.exp(out.loss.item())}


def config(tmp_path=None, **changes) -> TrainConfig:
    base = dict(
        steps=12,
        lr=3e-3,
        warmup=2,
        grad_accum=2,
        batch_size=BATCH,
        seq_len=SEQ,
        device="cpu",
        progress=False,
        out_dir=str(tmp_path) if tmp_path else None,
    )
    return TrainConfig(**{**base, **changes})


def test_schedule_warms_up_then_decays_to_min_lr():
    c = TrainConfig(steps=100, lr=1.0, min_lr=0.1, warmup=10)
    factors = [lr_factor(s, c) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False)), (
        "the cosine must not increase"
    )
    assert lr_factor(100, c) == pytest.approx(0.1)


def test_training_lowers_the_loss_and_logs(tmp_path):
    model = tiny_gpt2()
    result = train(
        model,
        lm_loss,
        batches_from,
        config(tmp_path, steps=30),
        eval_fn=lambda m: {"val_loss": lm_loss(m, next(batches_from(10_000)))[0].item()},
    )
    assert result.finished and not result.skipped
    assert sum(result.losses[-5:]) / 5 < sum(result.losses[:5]) / 5 - 0.3
    assert result.tokens == 30 * 2 * BATCH * SEQ
    assert result.evals[-1]["step"] == 30
    log = json.loads((tmp_path / "log.json").read_text())
    assert log["finished"] and len(log["records"]) == 30 and "ppl" in log["records"][0]
    assert not (tmp_path / "checkpoint.pt").exists(), (
        "the final model replaces the training checkpoint"
    )


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    reference = train(tiny_gpt2(), lm_loss, batches_from, config()).losses

    def failing_batches(start: int):
        for i, batch in enumerate(batches_from(start)):
            if start + i == 15:  # inside step 8 (micro-batches 14 and 15)
                raise KeyboardInterrupt
            yield batch

    model = tiny_gpt2()
    with pytest.raises(KeyboardInterrupt):
        train(model, lm_loss, failing_batches, config(tmp_path, save_every=3))
    assert (tmp_path / "checkpoint.pt").exists()
    resumed_model = tiny_gpt2(seed=123)  # different weights: the checkpoint must overwrite them
    resumed = train(resumed_model, lm_loss, batches_from, config(tmp_path, save_every=3))
    assert len(resumed.losses) == len(reference)
    assert max(abs(a - b) for a, b in zip(resumed.losses, reference, strict=False)) <= 1e-6
    assert resumed.records[6]["wall_seconds"] <= resumed.records[-1]["wall_seconds"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_the_rerun_resumes_exactly(
    tmp_path, signum
):
    reference = train(tiny_gpt2(), lm_loss, batches_from, config()).losses
    calls = []

    def signalled(model, batch):  # the signal arrives inside step 5 (micro-batches 8 and 9)
        calls.append(1)
        if len(calls) == 9:
            os.kill(os.getpid(), signum)
        return lm_loss(model, batch)

    previous = signal.getsignal(signum)
    with pytest.raises(TrainingStopped, match="after step 5 of .*checkpoint of step 5"):
        train(
            tiny_gpt2(), signalled, batches_from, config(tmp_path)
        )  # save_every=0: only the stop saves
    assert len(calls) == 10, "the step under way when the signal came is finished, and no other"
    assert signal.getsignal(signum) is previous, (
        "the handlers in place before training are restored"
    )
    resumed = train(tiny_gpt2(seed=123), lm_loss, batches_from, config(tmp_path))
    assert max(abs(a - b) for a, b in zip(resumed.losses, reference, strict=False)) <= 1e-6
    with pytest.raises(TrainingStopped, match="nothing was kept"):
        calls.clear()
        train(tiny_gpt2(), signalled, batches_from, config())


def test_finished_run_is_skipped_and_weights_restored(tmp_path):
    model = tiny_gpt2()
    first = train(model, lm_loss, batches_from, config(tmp_path))
    again = tiny_gpt2(seed=5)
    second = train(again, lm_loss, batches_from, config(tmp_path))
    assert second.skipped and second.losses == first.losses
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=False):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="another config"):
        train(tiny_gpt2(), lm_loss, batches_from, config(tmp_path, lr=1e-2))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    calls = []

    def exploding(model, batch):  # finite for 10 micro-batches (5 steps), then NaN
        calls.append(1)
        loss, metrics = lm_loss(model, batch)
        return (loss * float("nan") if len(calls) > 10 else loss), metrics

    with pytest.raises(TrainingDiverged, match="step 5.*last good checkpoint \\(step 4\\)"):
        train(tiny_gpt2(), exploding, batches_from, config(tmp_path, save_every=2))
    log = json.loads((tmp_path / "log.json").read_text())
    assert not log["finished"] and "nan" in log["stopped"]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 4


def test_trainable_subset_leaves_other_weights_untouched():
    model = tiny_gpt2(dropout=0.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    head = model.transformer.h[1].attn
    train(model, lm_loss, batches_from, config(steps=3), trainable=head.parameters())
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith("transformer.h.1.attn") for n in changed)
    assert all(p.requires_grad for p in model.parameters()), "flags must be restored after training"


def test_warmup_stable_decay_keeps_the_full_rate_until_the_last_fraction():
    config = TrainConfig(steps=100, lr=1.0, warmup=10, decay_fraction=0.2)
    factors = [lr_factor(step, config) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(f == 1.0 for f in factors[10:81])  # stable until step 80
    assert all(a > b for a, b in zip(factors[80:-1], factors[81:], strict=True))  # then decays
    assert factors[-1] == pytest.approx(0.1, abs=0.01)
    cosine = TrainConfig(steps=100, lr=1.0, warmup=10)
    assert lr_factor(50, cosine) < 1.0  # without it, the decay starts after the warm-up


def test_decay_fraction_is_checked_and_absent_from_the_identity_when_unset():
    with pytest.raises(ValueError, match="decay_fraction must be in"):
        TrainConfig(steps=10, decay_fraction=1.5)
    assert "decay_fraction" not in TrainConfig(steps=10).identity()
    assert TrainConfig(steps=10, decay_fraction=0.2).identity()["decay_fraction"] == 0.2


def test_one_process_trains_in_bf16_then_in_float32():
    """The cpu teacher pre-trains in bf16 where the CPU has bf16 instructions; a student distilled
    after it in the same process (a notebook, `distill` on a fresh machine) trains in float32."""
    for precision in ("bf16", "no", "bf16"):
        result = train(
            tiny_gpt2(), lm_loss, batches_from, config(steps=2, mixed_precision=precision)
        )
        assert result.finished and all(math.isfinite(x) for x in result.losses)
