"""A student's drift from its teacher (hyena_lite.drift): the mixers' teacher-forced alignment
error, equal to the transfer stage's loss, and the residual stream's error token by token (and at
the first token alone), zero below the first Hyena layer."""

from __future__ import annotations

import pytest
import torch

from hyena_lite.distill import stages
from hyena_lite.drift import layer_drift
from hyena_lite.models import convert
from tests.tiny_models import random_gpt2, random_llama

VOCAB = 64


@pytest.mark.parametrize("make", [random_gpt2, random_llama], ids=["gpt2", "llama"])
def test_drift_is_zero_below_the_first_hyena_layer_and_the_mixer_error_is_the_transfer_loss(make):
    teacher = stages.freeze(make(VOCAB, 64, width=16, layers=3, seed=0).eval())
    student = convert(teacher, hyena_layers=[1, 2], init="teacher").eval()
    windows = torch.randint(0, VOCAB, (5, 24), generator=torch.Generator().manual_seed(0))
    drift = layer_drift(student, teacher, windows, batch_size=2)
    assert sorted(drift["mixer"]) == [1, 2] and sorted(drift["hidden"]) == [0, 1, 2]
    assert drift["hidden"][0] == 0.0 == drift["first_token"][0]  # block 0 is the teacher's own
    assert drift["hidden"][1] > 0.0 and all(v > 0.0 for v in drift["mixer"].values())
    # the stream's error token by token, every token weighing the same, and the first alone
    with torch.no_grad():
        mine = student(input_ids=windows, output_hidden_states=True).hidden_states[2]
        theirs = teacher(input_ids=windows, output_hidden_states=True).hidden_states[2]
    per_token = (mine - theirs).pow(2).sum(-1) / theirs.pow(2).sum(-1)
    assert drift["hidden"][1] == pytest.approx(per_token.mean().item(), rel=1e-4)
    assert drift["first_token"][1] == pytest.approx(per_token[:, 0].mean().item(), rel=1e-4)
    # the mixers' error is the transfer stage's loss, window by window averaged
    mixers = stages.MixerSet({layer: stages.layer_mixers(student)[layer] for layer in (1, 2)})
    objective = stages.transfer_objective(teacher, [1, 2])
    per_window = [objective(mixers, windows[i : i + 1])[1] for i in range(len(windows))]
    for layer in (1, 2):
        expected = sum(t[f"nmse_layer{layer}"] for t in per_window) / len(windows)
        assert drift["mixer"][layer] == pytest.approx(expected, rel=1e-4)


def test_drift_refuses_a_student_without_hyena_and_a_foreign_teacher():
    teacher = stages.freeze(random_gpt2(VOCAB, 64, width=16, layers=2, seed=0).eval())
    windows = torch.randint(0, VOCAB, (2, 8))
    with pytest.raises(ValueError, match="no Hyena mixer"):
        layer_drift(teacher, teacher, windows)
    other = stages.freeze(random_gpt2(VOCAB, 64, width=16, layers=3, seed=1).eval())
    with pytest.raises(ValueError, match="the teacher the student was made from"):
        layer_drift(convert(teacher, init="teacher"), other, windows)
    with pytest.raises(ValueError, match=r"\[N, L\]"):
        layer_drift(convert(teacher, init="teacher"), teacher, windows[0])
