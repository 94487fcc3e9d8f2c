"""The book's students (hyena_lite.book_students): a complete run identity, trained once, loaded
after, and a stopped run resumes to the same weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import hyena_lite
from hyena_lite import book_students as bs
from hyena_lite import distill, get_profile
from hyena_lite.data import gpt2_tokenizer
from hyena_lite.distill import stages
from hyena_lite.training import TrainConfig
from tests.tiny_models import random_gpt2

SEQ, BATCH = 16, 2
TOKENS = 4 * BATCH * SEQ  # four optimiser steps per student


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


def tiny_setup(tokenizer, seed: int = 0) -> distill.Setup:
    """A Setup on a random 2-layer GPT-2 with the real tokenizer (the hybrid's induction probe needs
    its ordinary tokens) and random training tokens."""
    teacher = random_gpt2(len(tokenizer), 160, width=16, layers=2, seed=seed)
    torch.manual_seed(seed)
    windows = torch.randint(0, len(tokenizer), (2, SEQ))
    config = TrainConfig(
        steps=1,
        lr=3e-3,
        batch_size=BATCH,
        seq_len=SEQ,
        device="cpu",
        progress=False,
        context={"teacher": "tiny"},
    )
    return distill.Setup(
        stages.freeze(teacher.eval()),
        tokenizer,
        torch.randint(0, len(tokenizer), (4096,)),
        windows,
        windows,
        config,
    )


def students(setup, root):
    return bs.book_students(
        get_profile("smoke"), setup=setup, tokens=TOKENS, root=root, progress=False
    )


def test_the_identity_changes_when_any_input_changes(tokenizer, monkeypatch):
    setup = tiny_setup(tokenizer)

    def digest(
        setup=setup,
        label="distilled",
        recipe="best",
        tokens=TOKENS,
        layers=None,
        tokenizer_key=None,
    ):
        inputs = bs.shared_inputs(setup)
        if tokenizer_key is not None:
            inputs["tokenizer"] = tokenizer_key
        return bs.runs.digest(bs.identity(label, recipe, setup, tokens, layers, inputs))

    base = digest()
    assert digest() == base  # equal inputs, equal identity
    other_teacher = dataclasses.replace(setup, teacher=tiny_setup(tokenizer, seed=1).teacher)
    other_data = dataclasses.replace(setup, train_tokens=setup.train_tokens.flip(0))
    other_seed = dataclasses.replace(setup, config=dataclasses.replace(setup.config, seed=1))
    other_lr = dataclasses.replace(setup, config=dataclasses.replace(setup.config, lr=1e-3))
    renamed = dataclasses.replace(
        setup, config=dataclasses.replace(setup.config, context={"teacher": "another"})
    )
    changed = {
        "teacher weights": digest(setup=other_teacher),
        "teacher name": digest(setup=renamed),
        "data": digest(setup=other_data),
        "seed": digest(setup=other_seed),
        "learning rate": digest(setup=other_lr),
        "recipe": digest(recipe="paper"),
        "budget": digest(tokens=2 * TOKENS),
        "layers": digest(layers=[1]),
        "tokenizer": digest(tokenizer_key="another"),
        "student": digest(label="hybrid"),
    }
    monkeypatch.setattr(hyena_lite, "__version__", "9.9.9")
    changed["library version"] = digest()
    assert all(value != base for value in changed.values()), changed
    assert len(set(changed.values())) == len(changed)


def test_trained_once_then_loaded_without_training(tokenizer, tmp_path, monkeypatch):
    first = students(tiny_setup(tokenizer), tmp_path)
    assert set(first.students) == {"distilled", "scratch", "hybrid"}
    assert all(s.trained for s in first.students.values())
    tokens = {label: s.summary["tokens"] for label, s in first.students.items()}
    assert tokens == dict.fromkeys(tokens, TOKENS), tokens  # equal tokens for every student
    assert first.students["distilled"].identity["hyena_layers"] is None
    kept = first.attention_layers
    assert len(kept) == 1 and kept[0] == max(range(2), key=lambda i: first.induction[i])
    assert first.students["hybrid"].identity["hyena_layers"] == [1 - kept[0]]
    assert first["hybrid"].config.hyena_layers == [1 - kept[0]]
    # every student trains on the same mix: a quarter of the rows copy / recall sequences
    assert first.setup.recall_fraction == bs.RECALL_FRACTION == 0.25
    mixes = [s.identity["data_mix"] for s in first.students.values()]
    assert mixes == [{"corpus": 0.75, "teacher_samples": 0.0, "recall": 0.25}] * 3

    def no_training(*args, **kwargs):
        raise AssertionError("a cached student was trained again")

    monkeypatch.setattr(distill, "run_recipe", no_training)
    second = students(tiny_setup(tokenizer), tmp_path)
    for label, student in second.students.items():
        assert not student.trained and student.key == first.students[label].key
        assert student.folder == first.students[label].folder
        for (name, a), b in zip(
            first[label].state_dict().items(), student.model.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), f"{label}: {name} differs after loading"
    assert "loaded from the cache" in second.describe()
    with pytest.raises(KeyError, match="distilled, scratch, hybrid"):
        second["ce"]


def test_the_control_is_the_teacher_fine_tuned_on_the_students_tokens(tokenizer, tmp_path):
    setup = tiny_setup(tokenizer)
    chain = students(setup, tmp_path)
    control = chain.control
    assert control.label == control.recipe == bs.CONTROL and control.trained
    assert control.summary["tokens"] == TOKENS  # exactly the students' budget
    assert control.identity["data_mix"] == chain.students["distilled"].identity["data_mix"]
    assert "teacher_ft" in chain.describe() and "Hyena layers none" in chain.describe()
    # the teacher's architecture, moved by the fine-tuning, and the teacher left untouched
    teacher = setup.teacher.state_dict()
    tuned = control.model.state_dict()
    assert tuned.keys() == teacher.keys()
    assert any(not torch.equal(tuned[k], teacher[k]) for k in teacher)
    again = students(tiny_setup(tokenizer), tmp_path).control
    assert not again.trained and again.key == control.key


def test_a_stopped_run_resumes_to_the_weights_of_an_unbroken_one(tokenizer, tmp_path, monkeypatch):
    unbroken = students(tiny_setup(tokenizer), tmp_path / "unbroken")

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt("stopped after the progressive stage")

    with monkeypatch.context() as patch:
        patch.setattr(stages, "kd", stopped)
        with pytest.raises(KeyboardInterrupt):
            students(tiny_setup(tokenizer), tmp_path / "resumed")
    reused: list[tuple[str, bool]] = []
    train = stages.train

    def recording(model, loss_fn, batches_fn, config, *args, **kwargs):
        result = train(model, loss_fn, batches_fn, config, *args, **kwargs)
        reused.append((config.tag, result.skipped))
        return result

    monkeypatch.setattr(stages, "train", recording)
    resumed = students(tiny_setup(tokenizer), tmp_path / "resumed")
    distilled = [(tag, skipped) for tag, skipped in reused if tag.startswith("best")][:3]
    assert [skipped for _, skipped in distilled] == [True, True, False], reused
    for label in unbroken.students:
        for a, b in zip(
            unbroken[label].state_dict().values(), resumed[label].state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), f"{label}: the resumed student differs"


def test_a_budget_below_one_step_is_refused(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="less than one optimiser step"):
        bs.book_students(
            get_profile("smoke"),
            setup=tiny_setup(tokenizer),
            tokens=SEQ,
            root=tmp_path,
            progress=False,
        )
