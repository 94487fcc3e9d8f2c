"""The offline lm-eval task: its passages, and lm_eval's Python API scoring a tiny teacher and
its student on both variants (loglikelihood and generation)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_models import random_gpt2, save_tiny_gpt2

from hyena_lite import lm_eval_task
from hyena_lite.data import gpt2_tokenizer
from hyena_lite.evaluate import corpus_texts

pytest.importorskip(
    "lm_eval", reason="lm-eval is not installed: pip install -e '.[eval]' (it is in [test] too)"
)


def test_passages_end_before_their_target_word_in_the_source():
    texts = corpus_texts("test")
    rows = lm_eval_task.passages(texts, n=30, words=20)
    assert len(rows) == 30 and {r["domain"] for r in rows} == set(texts)
    flat = {domain: " ".join(text.split()) for domain, text in texts.items()}
    for row in rows:
        assert 10 <= len(row["context"].split()) <= 20
        assert f"{row['context']} {row['target']}" in flat[row["domain"]]
    assert rows == lm_eval_task.passages(texts, n=30, words=20)  # deterministic


def test_passages_refuse_texts_without_a_sentence_end():
    with pytest.raises(ValueError, match="no passage"):
        lm_eval_task.passages({"a": "no sentence ends here at all"}, words=3)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from hyena_lite.models import convert

    teacher = AutoModelForCausalLM.from_pretrained(
        save_tiny_gpt2(tmp_path_factory.mktemp("teacher"), positions=128)
    ).eval()
    return {"teacher": teacher, "student": convert(teacher).eval()}


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_simple_evaluate_scores_both_variants(models, which, tmp_path):
    folder = lm_eval_task.write_task(tmp_path / "task", n=12, words=12)
    rows = [json.loads(line) for line in (folder / lm_eval_task.DATA_FILE).open()]
    model, tokenizer = models[which], gpt2_tokenizer()
    results = lm_eval_task.evaluate_lm(model, tokenizer, folder, limit=3, batch_size=2)

    assert set(results) == {lm_eval_task.TASK, lm_eval_task.TASK_GEN}
    assert 0.0 <= results[lm_eval_task.TASK]["acc"] <= 1.0
    assert 0.0 <= results[lm_eval_task.TASK_GEN]["exact_match"] <= 1.0
    # lm_eval's perplexity is exp(-mean log p(" " + target | context)): recompute it here
    logprobs = []
    for row in rows[:3]:
        context = tokenizer(row["context"])["input_ids"]
        target = tokenizer(" " + row["target"])["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([context + target])).logits[0].double()
        scores = logits[len(context) - 1 : -1].log_softmax(-1)
        logprobs.append(float(scores[torch.arange(len(target)), target].sum()))
    expected = math.exp(-sum(logprobs) / len(logprobs))
    assert results[lm_eval_task.TASK]["perplexity"] == pytest.approx(expected, rel=1e-4)


def test_the_lm_eval_command_prints_json_alone_on_stdout(tmp_path, capsys):
    from hyena_lite.cli import main

    folder = save_tiny_gpt2(tmp_path / "tiny", positions=128)
    argv = ["lm-eval", "--model", f"tiny={folder}", "--limit", "2", "--batch-size", "2"]
    assert main([*argv, "--profile", "smoke", "--json", "-", "--no-progress"]) == 0
    captured = capsys.readouterr()
    scores = json.loads(captured.out)["models"]["tiny"]
    assert set(scores) == {lm_eval_task.TASK, lm_eval_task.TASK_GEN}
    assert 0.0 <= scores[lm_eval_task.TASK_GEN]["exact_match"] <= 1.0
    assert "tiny: hyena_lastword" in captured.err  # the table, on stderr


def test_a_quiet_evaluation_writes_nothing_to_stderr(tmp_path, capfd):
    """A chapter's cell runs the harness with progress=False: a book build rejects stderr, and
    lm-eval writes bars (with their own `disable=`) and warnings about a model object there."""
    tokenizer = gpt2_tokenizer()
    model = random_gpt2(len(tokenizer), 128).eval()
    task_dir = lm_eval_task.write_task(tmp_path)
    capfd.readouterr()
    lm_eval_task.evaluate_lm(model, tokenizer, task_dir, limit=2, batch_size=2, progress=False)
    assert capfd.readouterr().err == ""
