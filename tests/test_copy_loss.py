"""The copy-aware loss (hyena_lite.copy_loss): induction targets from the data, the loss on a
hybrid's attention, and the KD stage that adds it (hyena_lite.distill)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from hyena_lite import distill
from hyena_lite.capture import first_output
from hyena_lite.copy_loss import (
    attention_layers,
    copyable_in_text,
    final_residual,
    induction_loss,
    induction_targets,
    logit_lens,
    readout_loss,
    written_logits,
)
from hyena_lite.distill import stages
from hyena_lite.models import convert, family_of
from hyena_lite.probes import copy_batch
from hyena_lite.recall import eager_attention
from hyena_lite.teacher_data import MixedSetup
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


def test_copyable_in_text_is_induction_targets_rule_within_its_reach():
    torch.manual_seed(1)
    ids = torch.randint(0, 5, (300,))  # a small alphabet: many repeats, near and far
    _, copyable = induction_targets(ids[None])
    assert torch.equal(copyable_in_text(ids, reach=300), copyable[0, :-1])
    near = copyable_in_text(ids, reach=3)
    assert not (near & ~copyable[0, :-1]).any() and near.sum() < copyable.sum()
    by_hand = torch.tensor([5, 1, 2, 3, 1, 2, 3, 9])
    # targets 2 and 3 of t=4, 5 (their earlier 1 and 2 three tokens back), not with reach 2
    assert copyable_in_text(by_hand, 3).tolist() == [0, 0, 0, 0, 1, 1, 0]
    assert not copyable_in_text(by_hand, 2).any()
    with pytest.raises(ValueError, match="one text"):
        copyable_in_text(ids[None], 3)
    with pytest.raises(ValueError, match="reach"):
        copyable_in_text(ids, 0)


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


def test_a_recipe_takes_stage_options_and_budgets_and_refuses_stages_it_does_not_run():
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
    longer = distill.run_recipe(
        "transfer", hybrid, 4 * BATCH * SEQ, stage_tokens={"transfer": 3 * BATCH * SEQ}
    )  # its own budget for the transfer (3 steps), the kd stage its share (3 of 4)
    assert [r.tokens for r in longer.runs["transfer"]] == [3 * BATCH * SEQ]
    assert [r.tokens for r in longer.runs["kd"]] == [3 * BATCH * SEQ]
    with pytest.raises(ValueError, match="stage_tokens names stages"):
        distill.run_recipe("ce", hybrid, 4 * BATCH * SEQ, stage_tokens={"transfer": 1})


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


def test_the_readout_loss_is_the_next_tokens_cross_entropy_at_copyable_positions_by_hand():
    ids = torch.tensor([[5, 1, 2, 3, 1, 2, 3, 9]])  # copyable: 4 (next 2) and 5 (next 3)
    _, copyable = induction_targets(ids)
    read = torch.nn.Identity()  # hidden states are the logits (D = vocab = 10)
    written = torch.zeros(1, 8, 10)
    written[0, 4, 2] = 2.0  # position 4 says 2 with logit 2, position 5 writes nothing
    # by hand: -log softmax: at 4, log(e^2 + 9) - 2; at 5, uniform over 10: log 10
    expected = (math.log(math.exp(2) + 9) - 2 + math.log(10)) / 2
    assert readout_loss([written], read, ids, copyable).item() == pytest.approx(expected)
    # per position the best layer counts: a second layer that is right at 5 only
    other = torch.zeros(1, 8, 10)
    other[0, 5, 3] = 5.0
    best = (math.log(math.exp(2) + 9) - 2 + math.log(math.exp(5) + 9) - 5) / 2
    assert readout_loss([written, other], read, ids, copyable).item() == pytest.approx(best)
    # what is written elsewhere (not copyable: positions 0-3, 6, 7) does not count
    noise = written.clone()
    noise[0, [0, 1, 2, 3, 6, 7]] = torch.randn(6, 10)
    assert readout_loss([noise], read, ids, copyable).item() == pytest.approx(expected)
    # padding of t + 1 makes t not copyable
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    _, padded = induction_targets(ids, mask)
    assert readout_loss([written], read, ids, padded).item() == pytest.approx(
        math.log(math.exp(2) + 9) - 2
    )


def test_the_readout_loss_is_causal_zero_with_a_gradient_and_needs_an_attention_layer():
    ids = torch.tensor([[5, 1, 2, 3, 1, 2, 3, 9]])
    _, copyable = induction_targets(ids)
    written = torch.randn(1, 8, 10, requires_grad=True)
    readout_loss([written], torch.nn.Identity(), ids, copyable).backward()
    # the loss at t reads only what is written at t: positions 4 and 5 alone get a gradient
    assert written.grad.abs().sum(-1)[0].nonzero().flatten().tolist() == [4, 5]
    plain = torch.tensor([[1, 2, 3, 4]])
    flat = torch.randn(1, 4, 10, requires_grad=True)
    loss = readout_loss([flat], torch.nn.Identity(), plain, induction_targets(plain)[1])
    loss.backward()
    assert loss.item() == 0.0 and flat.grad is not None
    with pytest.raises(ValueError, match="at least one attention layer"):
        readout_loss([], torch.nn.Identity(), plain, induction_targets(plain)[1])
    with pytest.raises(ValueError, match="must match ids"):
        readout_loss([flat], torch.nn.Identity(), plain, copyable)


def test_the_logit_lens_is_the_models_own_final_norm_and_head_and_finds_the_kept_layers():
    """Read from the last layer's output, the lens gives the model's logits (GPT-2 and Llama)."""
    gpt2 = random_gpt2(VOCAB, 64, width=16, layers=3).eval()
    for teacher in (gpt2, random_llama(VOCAB, 64, layers=3)):
        student = convert(teacher, hyena_layers=[0, 2], init="teacher").eval()
        assert attention_layers(teacher) == [0, 1, 2] and attention_layers(student) == [1]
        seen = []
        last = family_of(student).layers(student)[-1]
        hook = last.register_forward_hook(lambda m, a, out, seen=seen: seen.append(out))
        with torch.no_grad():
            logits = student(input_ids=torch.tensor([[1, 2, 3, 1, 2]])).logits
            lens = logit_lens(student)(first_output(seen[0]))
        hook.remove()
        assert torch.allclose(lens, logits, atol=1e-5)


def test_kd_with_the_readout_loss_trains_the_kept_attention_of_a_gpt2_and_a_llama_hybrid():
    """The read-out term reaches the kept attention layer's weights (and the shared head) in both
    families; the KD stage records it."""
    ids = copy_batch(torch.arange(VOCAB), 0, 7, BATCH, seed=0)[0]  # 15 tokens
    for teacher in (tiny_teacher(), stages.freeze(random_llama(VOCAB, 64, layers=3))):
        student = convert(
            teacher,
            hyena_layers=[0, 2] if teacher.config.num_hidden_layers == 3 else [0],
            init="teacher",
        )
        kept = attention_layers(student)
        loss, terms = stages.kd_objective(teacher, readout=1.0)(student, ids)
        assert set(terms) == {"kd", "ce", "readout"} and terms["readout"] > 0
        loss.backward()
        attention = family_of(student).layers(student)[kept[0]]
        mixer = getattr(attention, family_of(student).attention)
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mixer.parameters())
        with pytest.raises(ValueError, match="at least one attention layer"):
            stages.kd_objective(teacher, readout=1.0)(convert(teacher, init="teacher"), ids)
    batches = lambda start: iter(lambda: ids, None)  # noqa: E731  the same copy batch, endlessly
    config = TrainConfig(steps=2, lr=3e-3, batch_size=BATCH, seq_len=15, progress=False)
    teacher = tiny_teacher()
    student = convert(teacher, hyena_layers=[0], init="teacher")
    frozen = {n: p.detach().clone() for n, p in student.named_parameters()}
    result = stages.kd(
        student,
        teacher,
        batches,
        config,
        induction_weight=1.0,
        readout_weight=1.0,
        trainable="attention",
    )
    assert {"induction", "readout"} <= set(result.records[-1])
    changed = {n for n, p in student.named_parameters() if not torch.equal(p, frozen[n])}
    assert changed and all(n.startswith("transformer.h.1.attn.") for n in changed)
    with pytest.raises(ValueError, match="keeps no attention"):
        stages.kd(convert(teacher, init="teacher"), teacher, batches, config, trainable="attention")


def test_the_lens_is_scale_free_and_the_direct_effect_is_not():
    """A faint write reads as well as a loud one through the logit lens; its direct effect on the
    logits (the rest of the final residual held fixed, no gradient) is faint."""
    torch.manual_seed(0)
    norm = torch.nn.LayerNorm(10, elementwise_affine=False)  # a lens: norm, then identity head
    ids = torch.tensor([[5, 1, 2, 3, 1, 2, 3, 9]])
    _, copyable = induction_targets(ids)
    loud = torch.zeros(1, 8, 10)
    loud[0, 4, 2], loud[0, 5, 3] = 30.0, 30.0  # says the next token at both copyable positions
    final = 10 * torch.randn(1, 8, 10) + loud  # the rest of the stream is as loud as the write
    faint = loud * 1e-2
    lens_loud = readout_loss([loud], norm, ids, copyable).item()
    assert readout_loss([faint], norm, ids, copyable).item() == pytest.approx(lens_loud, rel=1e-2)
    rest = final - loud
    direct_loud = readout_loss([loud], norm, ids, copyable, final).item()
    direct_faint = readout_loss([faint], norm, ids, copyable, rest + faint).item()
    assert direct_loud < math.log(10) - 1 and direct_faint == pytest.approx(math.log(10), abs=0.05)
    # by hand at one position: norm(final) - norm(final - output)
    f, o = final[0, 4], loud[0, 4]
    assert torch.allclose(written_logits(o, norm, f), norm(f) - norm(f - o))
    assert torch.equal(written_logits(o, norm), norm(o))
    # the gradient reaches the layer's output only, never the rest of the stream
    o = loud.clone().requires_grad_(True)
    f = final.clone().requires_grad_(True)
    readout_loss([o], norm, ids, copyable, f).backward()
    assert o.grad.abs().sum() > 0 and f.grad is None


def test_kd_with_the_direct_readout_reads_the_final_norms_input_in_both_families():
    ids = copy_batch(torch.arange(VOCAB), 0, 7, BATCH, seed=0)[0]
    for teacher in (tiny_teacher(), stages.freeze(random_llama(VOCAB, 64, layers=3))):
        student = convert(teacher, hyena_layers=[0], init="teacher")
        with final_residual(student) as seen:
            out = student(input_ids=ids)
        assert torch.allclose(logit_lens(student)(seen["final"]), out.logits, atol=1e-5)
        lens = stages.kd_objective(teacher, readout=1.0)(student, ids)[1]["readout"]
        direct_loss, terms = stages.kd_objective(teacher, readout=1.0, readout_direct=True)(
            student, ids
        )
        assert terms["readout"] > 0 and terms["readout"] != pytest.approx(lens)
        direct_loss.backward()
        mixer = getattr(family_of(student).layers(student)[1], family_of(student).attention)
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mixer.parameters())


def test_the_induction_stage_needs_a_mixed_setup_and_a_share_of_recall_rows():
    teacher = tiny_teacher()
    windows = torch.randint(0, VOCAB, (2, SEQ))
    config = TrainConfig(steps=1, lr=3e-3, batch_size=BATCH, seq_len=SEQ, progress=False)
    setup = distill.Setup(
        teacher, None, torch.randint(0, VOCAB, (4096,)), windows, windows, config, [0]
    )
    student = convert(teacher, hyena_layers=[0], init="teacher")
    with pytest.raises(TypeError, match="MixedSetup"):
        distill.run_induction_stage(student, setup, BATCH * SEQ, 0.25, 0)
    mixed = MixedSetup.from_setup(setup)
    with pytest.raises(ValueError, match="recall_fraction must be in"):
        distill.run_induction_stage(student, mixed, BATCH * SEQ, 0.0, 0)
    assert distill.INDUCTION_STAGE["ce_weight"] == 0 and distill.INDUCTION_STAGE["induction_weight"]
