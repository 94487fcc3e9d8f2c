"""The capture hooks on a teacher's mixers: what they record, and the early stop."""

from __future__ import annotations

import torch
from tiny_models import random_batches, random_gpt2
from transformers import GPT2LMHeadModel

from hyena_lite import distill
from hyena_lite.capture import capture_mixer, first_output, run_until_stop

VOCAB, SEQ, BATCH = 40, 16, 4


def tiny_teacher(seed: int = 0) -> GPT2LMHeadModel:
    return random_gpt2(VOCAB, SEQ, seed=seed, dropout=0.1).eval()


batches_from = random_batches(VOCAB, BATCH, SEQ)


def test_first_output_takes_the_first_of_a_tuple():
    x = torch.ones(2)
    assert first_output((x, None)) is x and first_output([x]) is x and first_output(x) is x


def test_the_stop_ends_the_forward_early_and_other_errors_pass():
    """With stop=True the hook ends the pass at the captured layer: the head never runs."""
    teacher, ids = tiny_teacher(), next(batches_from(0))
    head_calls = []
    teacher.lm_head.register_forward_hook(lambda *_: head_calls.append(1))
    with torch.no_grad(), capture_mixer(teacher, 0) as io:
        run_until_stop(lambda: teacher(input_ids=ids))
    assert "output" in io and head_calls == []
    try:
        run_until_stop(lambda: 1 / 0)
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("run_until_stop swallowed an error that is not the capture's stop")


def test_capture_mixer_records_the_attention_input_and_output():
    teacher = tiny_teacher()
    ids = next(batches_from(0))
    with torch.no_grad(), distill.capture_mixer(teacher, 0) as io:
        distill.run_until_stop(lambda: teacher(input_ids=ids))
    with torch.no_grad():
        positions = torch.arange(SEQ)
        block = teacher.transformer.h[0]
        expected_in = block.ln_1(teacher.transformer.wte(ids) + teacher.transformer.wpe(positions))
        expected_out = block.attn(expected_in)[0]
    torch.testing.assert_close(io["input"], expected_in)
    torch.testing.assert_close(io["output"], expected_out)


def test_capture_mixers_records_every_layer_as_capture_mixer_does():
    teacher = tiny_teacher()
    ids = next(batches_from(0))
    with torch.no_grad(), distill.capture_mixers(teacher, [0, 1]) as both:
        distill.run_until_stop(lambda: teacher(input_ids=ids))
    for layer in (0, 1):
        with torch.no_grad(), distill.capture_mixer(teacher, layer) as one:
            distill.run_until_stop(lambda: teacher(input_ids=ids))
        torch.testing.assert_close(both[layer]["input"], one["input"])
        torch.testing.assert_close(both[layer]["output"], one["output"])
    assert not torch.equal(both[0]["output"], both[1]["output"])
