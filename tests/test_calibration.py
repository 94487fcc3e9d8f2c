"""Tests of hyena_lite.calibration on tiny random teachers (GPT-2, and Llama with grouped-query
attention)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import random_gpt2
from transformers import LlamaConfig, LlamaForCausalLM

from hyena_lite import distill
from hyena_lite.calibration import calibrate_mixers
from hyena_lite.fftconv import fftconv
from hyena_lite.models import convert, layer_mixers

VOCAB, CONTEXT, WIDTH = 53, 32, 16


def teacher_of(family: str, sharpen: float = 1.0):
    """A two-layer random teacher; `sharpen` multiplies its q, k, v weights (large, unnormalised
    projections)."""
    torch.manual_seed(0)
    if family == "gpt2":
        model = random_gpt2(VOCAB, CONTEXT, WIDTH, bos_token_id=None, eos_token_id=None).eval()
        qkv = [block.attn.c_attn.weight for block in model.transformer.h]
    else:
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=VOCAB,
                max_position_embeddings=CONTEXT,
                hidden_size=WIDTH,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=32,
                bos_token_id=None,
                eos_token_id=None,
            )
        ).eval()
        qkv = [
            p
            for layer in model.model.layers
            for p in (
                layer.self_attn.q_proj.weight,
                layer.self_attn.k_proj.weight,
                layer.self_attn.v_proj.weight,
            )
        ]
    with torch.no_grad():
        for w in qkv:
            w.mul_(sharpen)
    return model


def token_ids(batch: int = 3, length: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def outputs(student, teacher, layer: int, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(student mixer output, teacher attention output) of `layer` on the teacher's input to it."""
    with torch.no_grad(), distill.capture_mixer(teacher, layer) as io:
        distill.run_until_stop(lambda: teacher(input_ids=ids))
        return layer_mixers(student)[layer](io["input"])[0], io["output"]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("gates", [True, False])
def test_calibration_turns_a_blown_up_mixer_into_one_no_worse_than_zero(family, gates):
    teacher = teacher_of(family, sharpen=60.0)
    student = convert(teacher, init="teacher")
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    student.train()
    ids = token_ids()
    before = [distill.normalized_mse(*outputs(student, teacher, i, ids)).item() for i in range(2)]
    report = calibrate_mixers(student, teacher, ids, gates=gates, batch_size=2)
    after = [distill.normalized_mse(*outputs(student, teacher, i, ids)).item() for i in range(2)]
    assert min(before) > 2, f"the sharpened teacher should blow the seeded mixers up: {before}"
    assert all(a <= 1 + 1e-6 for a in after), (
        f"least squares cannot do worse than zero on its own data: {after}"
    )
    assert [r["nmse_before"] for r in report.values()] == pytest.approx(before, rel=1e-4)
    assert [r["nmse_after"] for r in report.values()] == pytest.approx(after, rel=1e-4, abs=1e-6)
    held_out = [
        distill.normalized_mse(*outputs(student, teacher, i, token_ids(seed=7))).item()
        for i in range(2)
    ]
    assert max(held_out) < 2 < min(before), (
        f"on other data the error should stay near 1: {held_out}"
    )
    assert student.training and not teacher.training, "the models' modes must be restored"
    assert all(torch.equal(v, teacher_state[k]) for k, v in teacher.state_dict().items()), (
        "the teacher must not change"
    )


def test_alpha_is_the_least_squares_scalar_over_the_kept_tokens():
    teacher = teacher_of("llama", sharpen=3.0)
    student = convert(teacher, init="teacher")
    ids, mask = token_ids(), torch.ones(3, 24, dtype=torch.long)
    mask[1, 15:] = 0  # right padding: these positions must not count
    out = layer_mixers(student)[1].operator.out_proj
    weight, bias = out.weight.detach().clone(), out.bias.detach().clone()
    s, t = outputs(student, teacher, 1, ids)
    keep = mask[..., None].double()
    s, t = s.double() * keep, t.double() * keep
    expected = ((s * t).sum() / (s * s).sum()).item()
    alpha = calibrate_mixers(student, teacher, ids, attention_mask=mask, gates=False)[1]["alpha"]
    assert alpha == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(out.weight, weight * alpha)
    torch.testing.assert_close(out.bias, bias * alpha)
    error = [
        ((a * s - t).pow(2).sum() / t.pow(2).sum()).item()
        for a in (alpha * 0.99, alpha, alpha * 1.01)
    ]
    assert error[1] < min(error[0], error[2]), "alpha must minimise the squared error"


def test_gate_step_makes_every_recurrence_step_keep_the_rms_of_v():
    teacher = teacher_of("gpt2", sharpen=5.0)
    student = convert(teacher, init="teacher", order=3)
    ids = token_ids()
    calibrate_mixers(student, teacher, ids)
    for layer in range(2):
        with torch.no_grad(), distill.capture_mixer(teacher, layer) as io:
            distill.run_until_stop(lambda: teacher(input_ids=ids))
            operator = layer_mixers(student)[layer].operator
            gates, v = operator.gates_and_value(io["input"])
            filters, skips = operator.long_filters(ids.shape[1])
            z = v.double()
            for n, x in enumerate(gates):
                z = x.double() * fftconv(z, filters[n].double(), skips[n].double())
                assert z.pow(2).mean().sqrt().item() == pytest.approx(
                    v.double().pow(2).mean().sqrt().item(), rel=1e-5
                )


def test_gate_step_moves_the_scale_but_not_what_the_mixer_computes():
    teacher = teacher_of(
        "llama", sharpen=40.0
    )  # no out_proj bias: the two calibrations give the same mixers
    ids = token_ids()
    students = [convert(teacher, init="teacher") for _ in range(2)]
    with torch.no_grad():
        students[1].load_state_dict(students[0].state_dict())
    reports = [
        calibrate_mixers(student, teacher, ids, gates=gates)
        for student, gates in zip(students, (True, False), strict=False)
    ]
    for layer in range(2):
        torch.testing.assert_close(
            *(outputs(student, teacher, layer, token_ids(seed=5))[0] for student in students),
            rtol=1e-4,
            atol=1e-6,
        )
        assert reports[0][layer]["nmse_after"] == pytest.approx(
            reports[1][layer]["nmse_after"], rel=1e-5
        )


def test_a_student_without_hyena_layers_is_left_unchanged():
    teacher = teacher_of("gpt2")
    student = convert(teacher, hyena_layers=[])
    state = {k: v.clone() for k, v in student.state_dict().items()}
    assert calibrate_mixers(student, teacher, token_ids()) == {}
    assert all(torch.equal(v, state[k]) for k, v in student.state_dict().items())


def test_errors_say_what_is_wrong():
    teacher = teacher_of("gpt2")
    student = convert(teacher)
    with pytest.raises(ValueError, match="non-empty"):
        calibrate_mixers(student, teacher, torch.zeros(0, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[batch, length\]"):
        calibrate_mixers(student, teacher, token_ids()[0])
    with pytest.raises(ValueError, match="token ids"):
        calibrate_mixers(student, teacher, token_ids().float())
    with pytest.raises(ValueError, match="attention_mask"):
        calibrate_mixers(student, teacher, token_ids(), attention_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match="not a Hyena student"):
        calibrate_mixers(teacher, teacher, token_ids())
    with pytest.raises(ValueError, match="the teacher must be"):
        calibrate_mixers(student, teacher_of("llama"), token_ids())
    with pytest.raises(ValueError, match="the teacher must be"):
        calibrate_mixers(student, student, token_ids())
    with pytest.raises(ValueError, match="not supported"):
        calibrate_mixers(torch.nn.Linear(2, 2), teacher, token_ids())
