"""Cached and recurrent decoding equal the full forward pass; modal fits converge; the generate CLI
runs."""

import pytest
import torch
from tiny_models import random_gpt2

from hyena_lite.cli import main
from hyena_lite.decoding import fit_student
from hyena_lite.experiments.generation import time_decoding
from hyena_lite.generation import Decoder, generate
from hyena_lite.models import convert


def _student(hyena_layers=None, seed: int = 0, vocab: int = 97):
    teacher = random_gpt2(vocab, 64, seed=seed, dropout=0.1, bos_token_id=0, eos_token_id=0).eval()
    return teacher, convert(teacher, hyena_layers=hyena_layers).eval()


@pytest.mark.parametrize("layers", [None, [1]])
def test_model_decoding_matches_full_forward(layers):
    _, student = _student(layers)
    ids = torch.randint(0, 97, (2, 24))
    with torch.no_grad():
        full = student(ids).logits
    fits = fit_student(student, order=16, progress=False)
    assert [row["layer"] for row in fits.rows] == (layers or [0, 1])
    for mode in ("cached", "recurrent"):
        with Decoder(student, mode, fits=fits.fits) as decoder:
            logits = [decoder.prefill(ids[:, :5], all_logits=True)]
            logits += [decoder.step(ids[:, i])[:, None] for i in range(5, 24)]
        tolerance = 1e-4 if mode == "cached" else 2e-3  # recurrent: up to the filter fit error
        torch.testing.assert_close(torch.cat(logits, dim=1), full, atol=tolerance, rtol=0)


def test_recurrent_state_is_constant_and_cached_state_grows():
    _, student = _student()
    fits = fit_student(student, order=8, progress=False).fits
    sizes = {}
    for mode in ("cached", "recurrent"):
        for context in (8, 40):
            row = time_decoding(student, mode, context, new_tokens=2, warmup=0, fits=fits)
            sizes[mode, context] = row["state_mb"]
    assert sizes["recurrent", 8] == sizes["recurrent", 40]
    assert sizes["cached", 40] > sizes["cached", 8]


def test_generate_modes_agree_and_errors_are_clear():
    teacher, student = _student()
    ids = torch.randint(0, 97, (1, 6))
    tokens = {
        mode: generate(student, ids, 8, mode=mode, order=16).tokens
        for mode in ("full", "cached", "recurrent")
    }
    assert torch.equal(tokens["full"], tokens["cached"])
    assert torch.equal(tokens["full"], tokens["recurrent"])
    assert torch.equal(
        generate(teacher, ids, 8, mode="cached").tokens,
        generate(teacher, ids, 8, mode="full").tokens,
    )
    with pytest.raises(ValueError, match="needs a Hyena student"):
        generate(teacher, ids, 4, mode="recurrent")
    with pytest.raises(ValueError, match="unknown decoding mode"):
        generate(student, ids, 4, mode="fast")
    with pytest.raises(ValueError, match="learned positions"):
        generate(student, ids, 100, mode="cached")


def test_cli_generates_from_a_saved_student(tmp_path, capsys):
    from hyena_lite.data import gpt2_tokenizer

    try:
        tokenizer = gpt2_tokenizer()
    except FileNotFoundError as error:
        pytest.skip(f"offline assets not built: {error}")
    _, student = _student(vocab=tokenizer.vocab_size)
    student.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    args = [
        "generate",
        "--model",
        str(tmp_path),
        "--prompt",
        "To be or not",
        "--max-new-tokens",
        "5",
        "--device",
        "cpu",
    ]
    assert main(args + ["--mode", "recurrent", "--order", "8"]) == 0
    out = capsys.readouterr().out
    assert (
        out.count("layer ") == 2
        and "tokens/s" in out
        and out.splitlines()[-2].startswith("To be or not")
    )
    assert main(args + ["--mode", "cached"]) == 0
    assert capsys.readouterr().out.splitlines()[-2] == out.splitlines()[-2]


def test_recurrent_perplexity_matches_convolutional_at_high_order():
    from hyena_lite.experiments.generation import quality_sweep
    from hyena_lite.generation import perplexity

    _, student = _student()
    windows = torch.randint(0, 97, (4, 32))
    rows = quality_sweep(student, windows, orders=(1, 12))
    assert rows[0]["conv_ppl"] == pytest.approx(perplexity(student, windows))
    assert (
        abs(rows[1]["relative_gap"]) < 1e-4
    )  # random filters are smooth: order 12 fits them almost exactly
    assert rows[0]["fit_mean_error"] > rows[1]["fit_mean_error"]
