"""Out-of-domain evaluation: the texts that `python -m hyena_lite data` builds from Debian packages
(read and checked by sha256), how their sources are cut, and the token-weighted sliding-window
scorer that every model of the results goes through."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from transformers import GPT2LMHeadModel

from hyena_lite import assets, corpus_sources, evaluate
from hyena_lite.cli import main
from hyena_lite.data import gpt2_tokenizer
from hyena_lite.paths import assets_dir
from tests.tiny_models import save_tiny_gpt2

built = pytest.mark.skipif(
    not (assets_dir() / "ood" / "manifest.json").is_file(),
    reason="the out-of-domain texts are not built: python -m hyena_lite data",
)


@built
def test_texts_are_three_registers_of_a_few_hundred_kilobytes():
    texts = evaluate.out_of_domain_texts()
    assert list(texts) == ["ood/technical", "ood/narrative", "ood/speech"]
    assert texts["ood/technical"].startswith("1. About this manual")
    assert texts["ood/narrative"].startswith("CHAPTER 1. Loomings.\n\nCall me Ishmael.")
    assert "Gutenberg" not in texts["ood/narrative"]  # the licence header and footer are cut
    assert texts["ood/speech"].startswith("Madame Speaker, Vice President Biden")
    sizes = [len(t.encode()) for t in texts.values()]
    assert all(50_000 < n < 310_000 for n in sizes), sizes


@built
def test_a_damaged_text_is_named_with_the_fix(tmp_path, monkeypatch):
    build = tmp_path / "data" / "build"
    shutil.copytree(assets_dir() / "ood", build / "ood")
    monkeypatch.setenv("HYENA_LITE_HOME", str(tmp_path))
    (build / "ood" / "speech.txt").write_text("changed\n")
    with pytest.raises(assets.AssetError, match=r"speech.txt is damaged.*--force"):
        evaluate.out_of_domain_texts()
    shutil.rmtree(build / "ood")
    with pytest.raises(FileNotFoundError, match="python -m hyena_lite data"):
        evaluate.out_of_domain_texts()


def test_sources_are_cut_at_a_paragraph_and_between_marker_lines():
    text = "one\n\ntwo two\n\nthree three three\n"
    assert corpus_sources._first_chars(text, 14) == "one\n\ntwo two"
    assert corpus_sources._first_chars(text, 12) == "one"
    assert corpus_sources._first_chars(text, 1000) == text
    lines = "header\nSTART\nbody\nEND\nfooter"
    assert corpus_sources._between(lines, "START", "END", "x") == "START\nbody"
    assert corpus_sources._between(lines, "START", None, "x") == "START\nbody\nEND\nfooter"
    with pytest.raises(corpus_sources.AssetError, match="'BEGIN' was not found"):
        corpus_sources._between(lines, "BEGIN", None, "x")


def test_scores_are_token_weighted_over_texts(tmp_path):
    tokenizer = gpt2_tokenizer()
    model = GPT2LMHeadModel.from_pretrained(save_tiny_gpt2(tmp_path / "tiny")).eval()
    texts = {"short": "A short text about rivers. " * 20, "long": "Lanterns in the harbor. " * 90}
    out = evaluate.score_texts(model, tokenizer, texts, context=32)
    nll, tokens, n_bytes = 0.0, 0, 0
    for text in texts.values():
        ids = evaluate.encode_text(text, tokenizer).ids
        every = evaluate.window_scores(model, ids, 32, 16)["nll"]
        nll, tokens, n_bytes = nll + float(every.sum()), tokens + len(every), n_bytes + len(text)
    assert out["tokens"] == tokens and out["bytes"] == n_bytes
    assert out["ppl"] == pytest.approx(math.exp(nll / tokens))
    assert out["bpb"] == pytest.approx(nll / (math.log(2) * n_bytes))
    per_text = [s["ppl"] for s in out["texts"].values()]
    mean_of_ratios = math.exp(sum(math.log(p) for p in per_text) / 2)
    assert out["ppl"] != pytest.approx(mean_of_ratios)  # weighted by tokens, not by text
    assert min(per_text) < out["ppl"] < max(per_text)
    with pytest.raises(ValueError, match="no texts to score"):
        evaluate.score_texts(model, tokenizer, {}, context=32)
    with pytest.raises(ValueError, match="nothing to pool"):
        evaluate.pooled([])


@built
def test_evaluate_cli_pools_each_group_of_texts(tmp_path):
    folder = save_tiny_gpt2(tmp_path / "tiny")
    gpt2_tokenizer().save_pretrained(folder)
    story = tmp_path / "story.txt"
    story.write_text("Lanterns in the harbor, and a short text about rivers. " * 30)
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--model", f"tiny={folder}", "--text", str(story), "--out-of-domain"]
    assert main([*argv, "--tasks", "ppl", "--profile", "smoke", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    groups = result["meta"]["text_groups"]
    assert groups == {"files": [str(story)], "out_of_domain": list(evaluate.out_of_domain_texts())}
    report = result["models"]["tiny"]
    files, text = report["pooled"]["files"], report["texts"][str(story)]
    assert files == {
        "tokens": text["tokens"],
        "bytes": text["bytes"],
        "ppl": pytest.approx(text["ppl"]),
        "bpb": pytest.approx(text["bpb"]),
        "by_class": files["by_class"],
    }
    for name, scored in text["by_class"].items():  # one text pooled: itself
        assert files["by_class"][name] == {**scored, "ppl": pytest.approx(scored["ppl"])}
    outside = report["pooled"]["out_of_domain"]
    assert outside == evaluate.pooled(report["texts"][n] for n in groups["out_of_domain"])
    assert outside["tokens"] == sum(report["texts"][n]["tokens"] for n in groups["out_of_domain"])
