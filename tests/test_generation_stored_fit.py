"""hyena_lite's own decoder (`Decoder`, `generate`) decodes with the modal fit stored in the
student's buffers: it is used, not refit; fitted again only for the layers whose filters changed;
another order is fitted per call and leaves it alone; it decodes as the fit it stores."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import hyena_lite.decoding
from hyena_lite.decoding import fit_student
from hyena_lite.generation import Decoder, generate
from hyena_lite.hf_cache import MODAL_ORDER, fit_recurrent_states, stored_fits
from hyena_lite.models import convert

VOCAB = 97


def _student(hyena_layers=None):
    torch.manual_seed(0)
    config = GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=64)
    return convert(GPT2LMHeadModel(config).eval(), hyena_layers=hyena_layers).eval()


def _count_fits(monkeypatch) -> list[int]:
    calls = []
    real = hyena_lite.decoding.fit_modal
    monkeypatch.setattr(
        hyena_lite.decoding, "fit_modal", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    return calls


@pytest.mark.parametrize("layers", [None, [0, 2]], ids=["all-hyena", "hybrid"])
def test_recurrent_decoding_uses_the_stored_fit_and_does_not_refit(layers, monkeypatch):
    student = _student(layers)
    stored = fit_recurrent_states(student)
    ids = torch.randint(1, VOCAB, (2, 6))
    given = generate(student, ids, 8, mode="recurrent", fits=stored).tokens
    calls = _count_fits(monkeypatch)
    with Decoder(student, "recurrent") as decoder:
        assert sorted(decoder.decoders) == sorted(stored)
        for layer, fit in stored.items():
            assert torch.equal(decoder.decoders[layer].fit.poles, fit.poles)
    assert torch.equal(generate(student, ids, 8, mode="recurrent").tokens, given)
    assert calls == []


def test_a_student_without_a_fit_is_fitted_once_and_layers_whose_filters_changed_again(
    monkeypatch,
):
    student = _student()
    ids = torch.randint(1, VOCAB, (1, 5))
    calls = _count_fits(monkeypatch)
    generate(student, ids, 4, mode="recurrent")
    generate(student, ids, 4, mode="recurrent")
    assert len(calls) == 3  # three layers, fitted by the first call only
    mixer = student.transformer.h[1].attn
    with torch.no_grad():
        for p in mixer.operator.filter_fn.parameters():
            if p.dim() >= 2:
                p.mul_(1.1)  # the filters change: the stored fit no longer belongs to them
    assert not mixer.modal_fit.matches(mixer.operator)
    generate(student, ids, 4, mode="recurrent")
    assert len(calls) == 4 and mixer.modal_fit.matches(mixer.operator)  # layer 1, and stored
    generate(student, ids, 4, mode="recurrent")
    assert len(calls) == 4


def test_another_order_is_fitted_per_call_and_leaves_the_stored_fit_alone(monkeypatch):
    student = _student()
    fit_recurrent_states(student)
    before = [m.modal_fit.poles.clone() for m in (b.attn for b in student.transformer.h)]
    assert stored_fits(student, 8) is None and stored_fits(student, MODAL_ORDER) is not None
    calls = _count_fits(monkeypatch)
    generate(student, torch.randint(1, VOCAB, (1, 5)), 4, mode="recurrent", order=8)
    assert len(calls) == 3
    after = [m.modal_fit.poles for m in (b.attn for b in student.transformer.h)]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_the_stored_float32_fit_decodes_as_the_fit_it_stores():
    student = _student()
    ids = torch.randint(1, VOCAB, (2, 24))
    with torch.no_grad():
        full = student(ids).logits
    fitted = fit_student(student, MODAL_ORDER, progress=False).fits  # float64, as fitted
    logits = {}
    for name, fits in (("stored", None), ("fitted", fitted)):
        with Decoder(student, "recurrent", fits=fits) as decoder:
            out = [decoder.prefill(ids[:, :5], all_logits=True)]
            out += [decoder.step(ids[:, i])[:, None] for i in range(5, 24)]
        logits[name] = torch.cat(out, dim=1)
    # the decoder runs in float32 either way: storing the fit in float32 (its modes padded with
    # zeros) changes the logits by float32 rounding only (measured: 6e-8 of logits up to 0.6)
    torch.testing.assert_close(logits["stored"], logits["fitted"], atol=1e-6, rtol=0)
    torch.testing.assert_close(logits["stored"], full, atol=2e-3, rtol=0)
