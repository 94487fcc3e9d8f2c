"""The Hyena mixer's first-token path (convert(..., first_token=True)): at a sequence's first
position softmax attention sees that position alone, so its output is a linear map of it, seeded
exact from the teacher and never trained; with every layer Hyena the student's first position is
then the teacher's at every layer. Saved and loaded with the weights, decoded by generate() with
left pads, and by the library's own decoders (cached, recurrent, the static-graph decoder)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from hyena_lite.decoding import fit_student
from hyena_lite.fastdecode import StudentGraphDecoder
from hyena_lite.generation import Decoder
from hyena_lite.models import convert
from hyena_lite.students import layer_mixers
from tests.tiny_models import random_llama

VOCAB = 61


def gpt2_teacher() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=64)
    teacher = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # biases that matter, so that the seeded map must carry them
        for p in teacher.parameters():
            if p.dim() == 1:
                p.normal_(0, 0.5)
    return teacher


TEACHERS = {"gpt2": gpt2_teacher, "llama": lambda: random_llama(VOCAB, 64, width=32, layers=3)}


@pytest.mark.parametrize("make", TEACHERS.values(), ids=TEACHERS.keys())
def test_the_first_position_is_the_teachers_at_every_layer(make):
    teacher = make()
    torch.manual_seed(5)  # the same fresh filters for both students
    student = convert(teacher, first_token=True)
    torch.manual_seed(5)
    plain = convert(teacher)
    ids = torch.randint(0, VOCAB, (3, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = teacher(input_ids=ids, output_hidden_states=True).hidden_states
        mine = student(input_ids=ids, output_hidden_states=True).hidden_states
        without = plain(input_ids=ids, output_hidden_states=True).hidden_states
    for layer in range(1, len(theirs)):
        torch.testing.assert_close(mine[layer][:, 0], theirs[layer][:, 0], rtol=1e-4, atol=1e-4)
        # the other positions are the plain student's, the path changes only the first
        if layer == 1:
            torch.testing.assert_close(mine[1][:, 1:], without[1][:, 1:])
    assert (without[-1][:, 0] - theirs[-1][:, 0]).abs().max() > 1e-2  # not so without it
    assert student.config.hyena_first_token and not plain.config.hyena_first_token
    assert all(m.first_token is None for m in layer_mixers(plain))


def test_the_path_stays_fixed_in_training_saves_loads_and_generates_with_left_pads(tmp_path):
    student = convert(gpt2_teacher(), hyena_layers=[0, 2], first_token=True).train()
    first = layer_mixers(student)[0].first_token
    seeded = first.weight.clone()
    assert not list(first.parameters())  # buffers: saved, never trained
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    ids = torch.randint(1, VOCAB, (2, 9))
    for _ in range(3):
        student(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.equal(first.weight, seeded)
    student.eval().save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded(input_ids=ids).logits, student(input_ids=ids).logits)
    # generate() on the cache, a left-padded row beside a full one, equals full recompute
    padded = torch.tensor([[0, 0, 5, 7, 9], [3, 4, 5, 7, 9]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    common = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    cached = loaded.generate(padded, use_cache=True, **common)
    full = loaded.generate(padded, use_cache=False, **common)
    assert torch.equal(cached, full)
    alone = loaded.generate(padded[:1, 2:], use_cache=True, **{**common, "attention_mask": None})
    assert torch.equal(cached[0, 2:], alone[0])  # the pads change nothing


def test_the_librarys_decoders_decode_it():
    student = convert(gpt2_teacher(), first_token=True)
    torch.manual_seed(5)
    plain = convert(gpt2_teacher())
    ids = torch.randint(0, VOCAB, (2, 12))
    with torch.no_grad():
        full = [student(ids[:, : t + 1]).logits[:, -1] for t in range(ids.shape[1])]
        plain_full = plain(ids[:, :1]).logits[:, -1]
    assert not torch.allclose(full[0], plain_full, atol=1e-3)  # the path matters here
    # cached: exact at every position, the first through the path
    with Decoder(student, mode="cached") as decoder:
        got = [decoder.prefill(ids[:, :1])] + [decoder.step(ids[:, t]) for t in range(1, 12)]
    for want, have in zip(full, got, strict=True):
        torch.testing.assert_close(have, want, atol=1e-5, rtol=0)
    # recurrent: the first position is the path's alone, so exact whatever the modal fit
    fits = fit_student(student, order=8, progress=False).fits
    with Decoder(student, mode="recurrent", fits=fits) as decoder:
        prompt = decoder.prefill(ids[:, :5], all_logits=True)
        steps = [decoder.step(ids[:, t]) for t in range(5, 12)]
    with torch.no_grad():
        whole = student(ids).logits
    torch.testing.assert_close(prompt[:, 0], whole[:, 0], atol=1e-5, rtol=0)
    # the static-graph decoder prefills through Decoder: the same steps
    fast = StudentGraphDecoder(student, fits, batch=2)
    fast.prefill(ids[:, :5])
    for t, want in zip(range(5, 12), steps, strict=True):
        torch.testing.assert_close(fast.step(ids[:, t]), want, atol=1e-5, rtol=0)
