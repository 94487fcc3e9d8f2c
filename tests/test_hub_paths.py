"""The hub code paths (gpu profile: GPT-2 and WikiText-103), run offline with the loaders patched to local data."""
from __future__ import annotations

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from hyena_lite import data, teachers
from hyena_lite.teachers import load_teacher


class LocalHub:
    """Redirects 'gpt2' to a local folder in AutoModelForCausalLM/AutoTokenizer.from_pretrained, and records the calls."""

    def __init__(self, folder, monkeypatch):
        self.folder, self.calls, self.cache_misses = folder, [], False
        for loader in (AutoModelForCausalLM, AutoTokenizer):
            monkeypatch.setattr(loader, "from_pretrained", self._patched(loader.from_pretrained))

    def _patched(self, original):
        def from_pretrained(name, *args, **kwargs):
            local = kwargs.get("local_files_only", False)
            self.calls.append(local)
            if local and self.cache_misses:
                raise OSError(f"{name} is not in the local hub cache")
            return original(str(self.folder) if name == "gpt2" else name, *args, **kwargs)
        return from_pretrained


@pytest.fixture
def local_gpt2(tmp_path, monkeypatch) -> LocalHub:
    """A tiny GPT-2 with the real GPT-2 tokenizer, in a folder that the name 'gpt2' resolves to."""
    folder = tmp_path / "gpt2"
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=64)).save_pretrained(folder)
    data.gpt2_tokenizer().save_pretrained(folder)
    return LocalHub(folder, monkeypatch)


def test_gpt2_from_the_local_hub_cache_needs_no_network(local_gpt2, monkeypatch):
    monkeypatch.setattr(teachers, "_hub_reachable", lambda: pytest.fail("the cache hit must not probe the hub"))
    model, tokenizer = load_teacher("gpt2")
    assert isinstance(model, GPT2LMHeadModel) and not model.training
    assert tokenizer.pad_token == tokenizer.eos_token and model.generation_config.pad_token_id == tokenizer.eos_token_id
    assert local_gpt2.calls == [True, True]


def test_gpt2_is_downloaded_when_the_cache_misses_and_the_hub_answers(local_gpt2, monkeypatch, capsys):
    local_gpt2.cache_misses = True
    monkeypatch.setattr(teachers, "_hub_reachable", lambda: True)
    model, tokenizer = load_teacher("gpt2")
    assert "downloading 'gpt2'" in capsys.readouterr().out
    assert local_gpt2.calls == [True, False, False]
    ids = tokenizer("Shall I compare thee", return_tensors="pt").input_ids
    assert model(input_ids=ids, labels=ids).loss.isfinite()


def test_wikitext_103_becomes_articles_per_split_when_the_hub_answers(monkeypatch):
    lines = ["", " = Valkyria = \n", " Text one .\n", " = Tower = \n", " Two .\n"]
    raw = datasets.DatasetDict({s: datasets.Dataset.from_dict({"text": lines}) for s in data.SPLITS})
    monkeypatch.setattr(data, "_hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda *names: raw if names == data.WIKITEXT else pytest.fail(names))
    corpus = data.load_corpus("wikitext-103")
    assert set(corpus) == set(data.SPLITS)
    assert corpus["validation"]["title"] == ["Valkyria", "Tower"]
    assert set(corpus["train"]["domain"]) == {"wikitext"}
