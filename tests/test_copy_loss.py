"""The copy-aware loss (hyena_lite.copy_loss): induction targets from the data, the loss on a
hybrid's attention, and the KD stage that adds it (hyena_lite.distill)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from hyena_lite import distill
from hyena_lite.copy_loss import induction_loss, induction_targets
from hyena_lite.distill import stages
from hyena_lite.models import convert
from hyena_lite.probes import copy_batch
from hyena_lite.recall import eager_attention
from hyena_lite.training import TrainConfig
from tests.tiny_models import random_gpt2, random_llama

VOCAB, SEQ, BATCH = 64, 16, 2


def test_targets_point_after_the_last_earlier_occurrence_where_copying_is_right():
    ids = torch.tensor([[5, 1, 2, 3, 1, 2, 3, 9]])
    targets, copyable = induction_targets(ids)
    # t=4 (token 1): its earlier 1 is at 1, then came 2, and 2 comes next: target 2
    # t=5 (2): target 3 (token 3, next is 3); t=6 (3): target 4 holds 1, but 9 comes next
    assert copyable.tolist() == [[False, False, False, False, True, True, False, False]]
    assert targets.tolist() == [[0, 0, 0, 0, 2, 3, 0, 0]]


def test_on_a_copy_row_every_position_of_the_second_copy_but_the_last_is_copyable():
    ids, scored = copy_batch(torch.arange(10, 50), start=0, length=12, n=3, seed=1)
    targets, copyable = induction_targets(ids)
    second = torch.arange(13, 25)  # [start, r_1..r_12, r_1..r_12]: the second copy is 13..24
    assert copyable[:, second[:-1]].all() and not copyable[:, : second[0]].any()
    assert not copyable[:, -1].any()
    assert torch.equal(targets[:, second[:-1]], (second[:-1] - 12 + 1).expand(3, -1))
    # the targets predict the scored tokens: the token at the target is the next token
    rows = torch.arange(3)[:, None]
    assert torch.equal(ids[rows, targets[:, second[:-1]]], ids[:, second[1:]])
    assert scored[:, second[1:]].all()


def test_targets_never_look_ahead_and_padding_is_never_copyable():
    torch.manual_seed(0)
    ids = torch.randint(0, 4, (3, 20))  # a small alphabet: many repeats
    targets, copyable = induction_targets(ids)
    positions = torch.arange(20)
    assert copyable.any()
    assert (targets[copyable] <= positions.expand(3, -1)[copyable]).all()
    assert (targets[copyable] >= 1).all()
    mask = torch.ones_like(ids)
    mask[:, 15:] = 0
    _, masked = induction_targets(ids, mask)
    assert not masked[:, 14:].any()
    assert torch.equal(masked[:, :14], copyable[:, :14])
    with pytest.raises(ValueError, match="batch, length"):
        induction_targets(ids[0])


def test_the_loss_is_zero_when_one_head_attends_to_the_targets_and_log_t_when_uniform():
    ids = torch.tensor([[5, 1, 2, 3, 1, 2, 3, 9]])
    targets, copyable = induction_targets(ids)
    length = ids.shape[1]
    uniform = torch.tril(torch.ones(length, length))
    uniform = (uniform / uniform.sum(-1, keepdim=True)).expand(1, 2, -1, -1)
    # positions 4 and 5 spread their attention over 5 and 6 keys
    assert induction_loss([uniform], targets, copyable).item() == pytest.approx(
        (math.log(5) + math.log(6)) / 2, rel=1e-6
    )
    exact = uniform.clone()
    exact[0, 1, 4], exact[0, 1, 5] = torch.eye(length)[2], torch.eye(length)[3]
    assert induction_loss([uniform, exact], targets, copyable).item() == pytest.approx(0.0)


def test_no_copyable_position_gives_zero_with_a_gradient_and_no_attention_is_an_error():
    attention = torch.full((1, 2, 4, 4), 0.25, requires_grad=True)
    ids = torch.tensor([[1, 2, 3, 4]])
    loss = induction_loss([attention], *induction_targets(ids))
    loss.backward()
    assert loss.item() == 0.0 and attention.grad is not None
    with pytest.raises(ValueError, match="keep at least one attention layer"):
        induction_loss([], *induction_targets(ids))


def tiny_teacher():
    return stages.freeze(random_gpt2(VOCAB, 64, width=16, layers=2, seed=0).eval())


def test_kd_with_the_copy_loss_trains_the_hybrids_attention_and_restores_its_kernel():
    teacher = tiny_teacher()
    student = convert(teacher, hyena_layers=[0], init="teacher")
    assert student.config._attn_implementation != "eager"
    kernel = student.config._attn_implementation
    ids = copy_batch(torch.arange(VOCAB), 0, 7, BATCH, seed=0)[0]  # 15 tokens
    objective = stages.kd_objective(teacher, induction=1.0)
    with pytest.raises(ValueError, match="keep at least one attention layer"):
        objective(convert(teacher, init="teacher"), ids)  # all-Hyena: nothing to teach
    with eager_attention(student):
        loss, terms = objective(student, ids)
    assert set(terms) == {"kd", "ce", "induction"} and terms["induction"] > 0
    loss.backward()
    attention = student.transformer.h[1].attn
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in attention.parameters())

    before = {n: p.detach().clone() for n, p in attention.named_parameters()}
    batches = lambda start: iter(lambda: ids, None)  # noqa: E731  the same copy batch, endlessly
    config = TrainConfig(steps=2, lr=3e-3, batch_size=BATCH, seq_len=15, progress=False)
    result = stages.kd(student, teacher, batches, config, induction_weight=1.0)
    assert "induction" in result.records[-1]
    assert any(not torch.equal(p, before[n]) for n, p in attention.named_parameters())
    assert student.config._attn_implementation == kernel


def test_a_recipe_takes_stage_options_and_refuses_stages_it_does_not_run():
    teacher = tiny_teacher()
    torch.manual_seed(0)
    windows = torch.randint(0, VOCAB, (2, SEQ))
    setup = distill.Setup(
        teacher,
        None,
        torch.randint(0, VOCAB, (4096,)),
        windows,
        windows,
        TrainConfig(steps=1, lr=3e-3, batch_size=BATCH, seq_len=SEQ, progress=False),
    )
    hybrid = dataclasses.replace(setup, hyena_layers=[0])
    run = distill.run_recipe(
        "best", hybrid, 4 * BATCH * SEQ, stage_options={"kd": {"induction_weight": 0.5}}
    )
    assert "induction" in run.runs["kd"][-1].records[-1]
    plain = distill.run_recipe("best", hybrid, 4 * BATCH * SEQ)
    assert "induction" not in plain.runs["kd"][-1].records[-1]
    with pytest.raises(ValueError, match="does not run"):
        distill.run_recipe("ce", hybrid, 4 * BATCH * SEQ, stage_options={"kd": {}})


def test_a_llama_hybrid_gives_the_loss_its_attention_layers_only():
    """SmolLM2's family: the hybrid returns the probabilities of its attention layers alone."""
    teacher = stages.freeze(random_llama(VOCAB, 64, layers=3))
    student = convert(teacher, hyena_layers=[0, 2], init="teacher")
    ids = copy_batch(torch.arange(VOCAB), 0, 7, BATCH, seed=0)[0]
    with eager_attention(student):
        out = student(input_ids=ids, output_attentions=True)
        loss, terms = stages.kd_objective(teacher, induction=1.0)(student, ids)
    assert [tuple(a.shape) for a in out.attentions if a is not None] == [(BATCH, 4, 15, 15)]
    loss.backward()
    attention = student.model.layers[1].self_attn
    assert terms["induction"] > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in attention.parameters())
