"""Tests of the distillation losses, the layer capture and the stages, on tiny random models."""

from __future__ import annotations

import pytest
import torch
from tiny_models import random_batches, random_gpt2
from transformers import GPT2LMHeadModel

from hyena_lite import distill
from hyena_lite.experiments import distill as experiments_distill
from hyena_lite.models import convert, layer_mixers
from hyena_lite.training import TrainConfig

VOCAB, SEQ, BATCH = 40, 16, 4


def tiny_teacher(seed: int = 0) -> GPT2LMHeadModel:
    return random_gpt2(VOCAB, SEQ, seed=seed).eval()


batches_from = random_batches(VOCAB, BATCH, SEQ)


def config(**changes) -> TrainConfig:
    base = dict(steps=8, lr=3e-3, batch_size=BATCH, seq_len=SEQ, device="cpu", progress=False)
    return TrainConfig(**{**base, **changes})


def test_progressive_aligns_each_mixer_and_touches_nothing_else():
    teacher = tiny_teacher()
    student = convert(tiny_teacher(), init="random")
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    teacher_before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    starts = []

    def recording(start):
        starts.append(start)
        return batches_from(start)

    results = distill.progressive(student, teacher, recording, config(steps=32))
    assert starts == [0, 16], "each layer's sub-stage must continue the data stream"
    for layer, result in enumerate(results):
        losses = result.losses
        assert losses[-1] < 0.8 * losses[0], (
            f"layer {layer} alignment did not improve: {losses[0]} -> {losses[-1]}"
        )
    mixer_params = {id(p) for m in layer_mixers(student) for p in m.parameters()}
    changed = [n for n, p in student.named_parameters() if not torch.equal(p, before[n])]
    assert changed and all(id(dict(student.named_parameters())[n]) in mixer_params for n in changed)
    assert all(torch.equal(p, teacher_before[n]) for n, p in teacher.named_parameters())


def test_transfer_aligns_every_mixer_at_once_and_touches_nothing_else():
    teacher = tiny_teacher()
    student = convert(tiny_teacher(), init="random")
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    seen = []
    result = distill.transfer(
        student, teacher, batches_from, config(steps=32), eval_fn=lambda m: seen.append(m) or {}
    )
    for layer in (0, 1):
        nmse = [r[f"nmse_layer{layer}"] for r in result.records]
        assert nmse[-1] < 0.8 * nmse[0], (
            f"layer {layer} alignment did not improve: {nmse[0]} -> {nmse[-1]}"
        )
    mean = [(r["nmse_layer0"] + r["nmse_layer1"]) / 2 for r in result.records]
    assert result.losses == pytest.approx(mean, rel=1e-5), (
        "the loss is the mean of the layers' NMSE"
    )
    mixer_params = {id(p) for m in layer_mixers(student) for p in m.parameters()}
    changed = {id(p) for n, p in student.named_parameters() if not torch.equal(p, before[n])}
    assert changed == mixer_params, "every mixer parameter, and nothing else, trains"
    assert seen and all(m is student for m in seen), "eval_fn sees the whole student"


def test_transfer_of_one_layer_is_progressive_alignment_of_that_layer():
    teacher = tiny_teacher()
    students = [convert(tiny_teacher(), hyena_layers=[1], init="random") for _ in range(2)]
    torch.manual_seed(0)
    by_transfer = distill.transfer(students[0], teacher, batches_from, config(steps=12))
    torch.manual_seed(0)
    by_progressive = distill.progressive(students[1], teacher, batches_from, config(steps=12))[0]
    assert by_transfer.losses == pytest.approx(by_progressive.losses, rel=1e-5)
    for a, b in zip(students[0].parameters(), students[1].parameters(), strict=False):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="no Hyena mixers"):
        distill.transfer(
            convert(tiny_teacher(), hyena_layers=[], init="random"), teacher, batches_from, config()
        )


def test_kd_lowers_the_divergence_and_mixers_only_subset():
    teacher = tiny_teacher()
    student = convert(teacher, init="fresh")  # the teacher but for its mixers
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    result = distill.kd(
        student, teacher, batches_from, config(steps=24), hidden_weight=0.1, trainable="mixers"
    )
    kd = [r["kd"] for r in result.records]
    assert sum(kd[-4:]) < 0.7 * sum(kd[:4]), f"KD did not fall: {kd[:4]} ... {kd[-4:]}"
    mixer_params = {id(p) for m in layer_mixers(student) for p in m.parameters()}
    changed = {id(p) for n, p in student.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= mixer_params


def test_kd_with_the_stream_term_pulls_the_stream_toward_the_teachers():
    teacher = tiny_teacher()
    student = convert(teacher, init="fresh")
    result = distill.kd(
        student, teacher, batches_from, config(steps=24), kd_weight=0.0, stream_weight=1.0
    )
    stream = [r["stream"] for r in result.records]
    assert sum(stream[-4:]) < 0.7 * sum(stream[:4]), f"{stream[:4]} ... {stream[-4:]}"


def test_progressive_from_student_inputs_with_unfreezing_trains_blocks_below():
    teacher = tiny_teacher()
    student = convert(teacher, init="fresh")
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    results = distill.progressive(
        student, teacher, batches_from, config(steps=8), input_from="student", unfreeze=True
    )
    assert [len(r.losses) for r in results] == [2, 2, 2, 2], (
        "align 0, blocks 0-0, align 1, blocks 0-1"
    )
    changed = {n for n, p in student.named_parameters() if not torch.equal(p, before[n])}
    assert any(".h.0.mlp." in n for n in changed) and any(".h.1.mlp." in n for n in changed)
    assert not any(
        n.startswith(("transformer.wte", "transformer.wpe", "transformer.ln_f")) for n in changed
    )
    with pytest.raises(ValueError, match="input_from"):
        distill.progressive(student, teacher, batches_from, config(), input_from="nobody")


def tiny_setup(log: list[int]) -> distill.Setup:
    """A Setup over random tokens whose batch stream records which batches it hands out."""
    torch.manual_seed(0)
    windows = torch.randint(0, VOCAB, (4, SEQ))
    setup = distill.Setup(
        tiny_teacher(),
        None,
        torch.randint(0, VOCAB, (4096,)),
        windows,
        windows,
        TrainConfig(steps=1, lr=3e-3, batch_size=BATCH, seq_len=SEQ, device="cpu", progress=False),
    )

    def batches_fn():
        def stream(start: int):
            for i, batch in enumerate(batches_from(start), start):
                log.append(i)
                yield batch

        return stream

    setup.batches_fn = batches_fn
    return setup


def test_compare_gives_every_student_exactly_the_same_batches():
    log: list[int] = []
    setup = tiny_setup(log)
    seen = {}
    for recipe in distill.RECIPES:
        log.clear()
        run = distill.run_recipe(recipe, setup, tokens=8 * BATCH * SEQ)
        seen[recipe] = sorted(log)
        assert sum(r.tokens for runs in run.runs.values() for r in runs) == 8 * BATCH * SEQ
    assert all(batches == list(range(8)) for batches in seen.values()), seen
    log.clear()
    report = experiments_distill.compare(setup, tokens=8 * BATCH * SEQ)
    # five recipes and the control (the teacher fine-tuned with CE), each on batches 0 to 7
    assert sorted(log) == sorted(list(range(8)) * 6)
    control = report["students"]["teacher_ft"]
    assert control["recipe"]["control"] == "teacher fine-tuned with cross-entropy"
    assert control["tokens"] == 8 * BATCH * SEQ and set(control["wall_seconds"]) == {"ce"}
    for key in (
        "teacher_ft_ppl",
        "teacher_ppl",
        "distilled_ppl",
        "paper_ppl",
        "ce_ppl",
        "scratch_ppl",
        "tokens",
        "wall_seconds",
    ):
        assert key in report, key
    assert report["tokens"] == 8 * BATCH * SEQ
    assert set(report["students"]["best"]["curve_ppl_after"]) == {
        "init",
        "calibrate",
        "progressive",
        "kd",
    }
    assert (
        set(report["students"]["best"]["calibration"]) == {0, 1}
        and not report["students"]["paper"]["calibration"]
    )
