"""The losses of distillation and the one mean NLL over windows, on tiny random models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tiny_models import random_gpt2
from transformers import GPT2LMHeadModel

from hyena_lite import distill
from hyena_lite.losses import validation_loss

VOCAB, SEQ, BATCH = 40, 16, 4


def tiny_teacher(seed: int = 0) -> GPT2LMHeadModel:
    return random_gpt2(VOCAB, SEQ, seed=seed, dropout=0.1).eval()


def test_validation_loss_is_the_token_weighted_mean_and_keeps_the_mode():
    """Windows in batches of 3 and 1 give the mean over all 4 windows' tokens, as Hugging Face's
    loss of one batch of 4 does; the model's training mode comes back; `logits` stands in for the
    forward."""
    model = tiny_teacher().train()
    windows = torch.randint(0, VOCAB, (4, SEQ), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model.eval()(input_ids=windows, labels=windows).loss.item()
    model.train()
    assert validation_loss(model, windows, batch_size=3) == pytest.approx(want, rel=1e-5)
    assert model.training
    uniform = validation_loss(model, windows, logits=lambda ids: torch.zeros(*ids.shape, VOCAB))
    assert uniform == pytest.approx(math.log(VOCAB), rel=1e-6)


def test_perplexity_eval_watches_out_of_domain_windows_only_where_given():
    model = tiny_teacher()
    make = torch.Generator().manual_seed(2)
    windows, ood = (torch.randint(0, VOCAB, (2, SEQ), generator=make) for _ in range(2))
    plain = distill.perplexity_eval(windows)(model)
    assert set(plain) == {"val_loss", "val_ppl"}
    both = distill.perplexity_eval(windows, ood_windows=ood)(model)
    assert both["val_ppl"] == pytest.approx(plain["val_ppl"])
    assert both["ood_loss"] == pytest.approx(validation_loss(model, ood))
    assert both["ood_ppl"] == pytest.approx(math.exp(both["ood_loss"]))


def test_kd_loss_is_the_scaled_kl_of_softened_distributions():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, VOCAB), torch.randn(2, 5, VOCAB)
    for temperature in (1.0, 2.0):
        expected = (
            F.kl_div(
                F.log_softmax(s / temperature, -1),
                F.log_softmax(t / temperature, -1),
                log_target=True,
                reduction="sum",
            )
            / 10
            * temperature**2
        )
        assert distill.kd_loss(s, t, temperature).item() == pytest.approx(expected.item(), rel=1e-5)
    assert distill.kd_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_ignores_padded_positions():
    torch.manual_seed(0)
    s, t = torch.randn(1, 4, VOCAB), torch.randn(1, 4, VOCAB)
    mask = torch.tensor([[1, 1, 0, 0]])
    noisy = s.clone()
    noisy[:, 2:] += 10 * torch.randn(1, 2, VOCAB)
    assert distill.kd_loss(noisy, t, mask=mask).item() == pytest.approx(
        distill.kd_loss(s[:, :2], t[:, :2]).item(), rel=1e-6
    )


def test_normalized_mse_scale_and_mask():
    torch.manual_seed(0)
    target = torch.randn(2, 6, 8)
    assert distill.normalized_mse(torch.zeros_like(target), target).item() == pytest.approx(1.0)
    assert distill.normalized_mse(target, target).item() == 0.0
    assert distill.normalized_mse(3 * target, 4 * target).item() == pytest.approx(1 / 16, rel=1e-5)
    mask = torch.ones(2, 6)
    mask[:, 3:] = 0
    off = target.clone()
    off[:, 3:] = 100.0
    assert distill.normalized_mse(off, target, mask).item() == 0.0


def test_stream_loss_weighs_tokens_alike_and_tames_a_massive_one():
    torch.manual_seed(0)
    teacher = [torch.randn(2, 6, 8) for _ in range(3)]
    assert distill.stream_loss(teacher, teacher).item() == 0.0
    zeros = [torch.zeros_like(t) for t in teacher]
    assert distill.stream_loss(zeros, teacher).item() == pytest.approx(math.log(2.0), rel=1e-5)
    # the teacher's massive first token holds a window's energy; the student matches it and is
    # 10% off on every other token: a window-level NMSE hardly sees it, stream_loss does
    massive = [t.clone() for t in teacher]
    for t in massive:
        t[:, 0] *= 1000.0
    near = [t.clone() for t in massive]
    for t in near:
        t[:, 1:] *= 1.1
    assert distill.normalized_mse(near[0], massive[0]).item() < 1e-4
    expected = math.log1p(0.01) * 5 / 6
    assert distill.stream_loss(near, massive).item() == pytest.approx(expected, rel=1e-4)
    assert distill.token_nmse(near[0], massive[0]).shape == (2, 6)
    # a spurious massive token: its gradient stays of an ordinary token's size
    student = [t.clone().requires_grad_(True) for t in teacher]
    with torch.no_grad():
        student[0][0, 3] = 1e4 * teacher[0][0, 3]
        student[0][1, 2] = 2.0 * teacher[0][1, 2]
    distill.stream_loss(student, teacher).backward()
    grads = student[0].grad.norm(dim=-1)
    assert grads[0, 3] < grads[1, 2]
    mask = torch.ones(2, 6)
    mask[0, 3] = 0.0
    masked = distill.stream_loss([s.detach() for s in student], teacher, mask)
    assert masked.item() == pytest.approx(math.log(2.0) / 11 / 3, rel=1e-4)  # 11 kept tokens
    with pytest.raises(ValueError, match="one per block"):
        distill.stream_loss(teacher[:2], teacher)


def test_weighted_sum_skips_zero_weights_and_refuses_all_zero():
    terms = {"a": torch.tensor(2.0), "b": torch.tensor(float("nan"))}
    assert distill.weighted_sum(terms, {"a": 0.5, "b": 0.0}).item() == 1.0
    with pytest.raises(ValueError, match="every loss weight is zero"):
        distill.weighted_sum(terms, {"a": 0.0})


def test_cross_entropy_matches_hugging_face_loss():
    teacher = tiny_teacher()
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    out = teacher(input_ids=ids, labels=ids)
    assert distill.lm_cross_entropy(out.logits, ids).item() == pytest.approx(
        out.loss.item(), rel=1e-5
    )
