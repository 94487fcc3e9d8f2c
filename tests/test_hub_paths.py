"""The hub code paths (gpu profile: GPT-2 and WikiText-103), run offline with the loaders patched to
local data."""

from __future__ import annotations

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from hyena_lite import data, hub, profiles, teachers
from hyena_lite.teachers import load_teacher


class LocalHub:
    """Redirects 'gpt2' to a local folder in AutoModelForCausalLM/AutoTokenizer.from_pretrained, and
    records the calls."""

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
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=64)).save_pretrained(
        folder
    )
    data.gpt2_tokenizer().save_pretrained(folder)
    return LocalHub(folder, monkeypatch)


def test_gpt2_from_the_local_hub_cache_needs_no_network(local_gpt2, monkeypatch):
    monkeypatch.setattr(
        hub, "reachable", lambda: pytest.fail("the cache hit must not probe the hub")
    )
    model, tokenizer = load_teacher("gpt2")
    assert isinstance(model, GPT2LMHeadModel) and not model.training
    assert (
        tokenizer.pad_token == tokenizer.eos_token
        and model.generation_config.pad_token_id == tokenizer.eos_token_id
    )
    assert local_gpt2.calls == [True, True]


def test_gpt2_is_downloaded_when_the_cache_misses_and_the_hub_answers(
    local_gpt2, monkeypatch, capsys
):
    local_gpt2.cache_misses = True
    monkeypatch.setattr(hub, "reachable", lambda: True)
    model, tokenizer = load_teacher("gpt2")
    assert "downloading 'gpt2'" in capsys.readouterr().out
    assert local_gpt2.calls == [True, False, False]
    ids = tokenizer("Shall I compare thee", return_tensors="pt").input_ids
    assert model(input_ids=ids, labels=ids).loss.isfinite()


def test_wikitext_103_becomes_articles_per_split_when_the_hub_answers(monkeypatch):
    lines = ["", " = Valkyria = \n", " Text one .\n", " = Tower = \n", " Two .\n"]
    raw = datasets.DatasetDict(
        {s: datasets.Dataset.from_dict({"text": lines}) for s in data.SPLITS}
    )
    monkeypatch.setattr(hub, "reachable", lambda: True)
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda *names: raw if names == data.WIKITEXT else pytest.fail(names),
    )
    corpus = data.load_corpus("wikitext-103")
    assert set(corpus) == set(data.SPLITS)
    assert corpus["validation"]["title"] == ["Valkyria", "Tower"]
    assert set(corpus["train"]["domain"]) == {"wikitext"}


# ------------------------------------------------ detecting the hub, and the gpu profile without it
class FakeSession:
    """Stands for huggingface_hub's HTTP session: records HEAD requests and answers `status` (or
    raises `error`)."""

    def __init__(self, status: int = 200, error: Exception | None = None):
        self.status, self.error, self.urls = status, error, []

    def head(self, url, timeout):
        self.urls.append(url)
        if self.error:
            raise self.error
        return type("Response", (), {"status_code": self.status})()


@pytest.fixture
def session(monkeypatch):
    """A fresh hub cache, no offline switch, the endpoint of a mirror, and a fake session
    to answer."""
    import huggingface_hub.constants
    import huggingface_hub.utils

    fake = FakeSession()
    for variable in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://mirror.example/")
    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: fake)
    monkeypatch.setattr(hub, "_answers", {})
    monkeypatch.setattr(profiles, "_told", set())
    return fake


def test_the_hub_is_asked_through_huggingface_hubs_session_at_its_endpoint_once(session):
    assert hub.reachable() and hub.reachable()
    assert session.urls == ["https://mirror.example/openai-community/gpt2/resolve/main/config.json"]


@pytest.mark.parametrize(
    "answer",
    [
        FakeSession(status=503),
        FakeSession(status=403),
        FakeSession(error=ConnectionError("name resolution failed")),
        FakeSession(error=TimeoutError("timed out")),
    ],
    ids=["503", "403", "dns", "timeout"],
)
def test_an_error_or_no_answer_means_unreachable(session, monkeypatch, answer):
    import huggingface_hub.utils

    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: answer)
    assert not hub.reachable()
    assert "https://mirror.example does not answer" == hub.describe()


def test_the_offline_switch_is_honoured_without_a_request(session, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub.reachable() and session.urls == []
    assert "HF_HUB_OFFLINE" in hub.describe()


def test_gpu_profile_falls_back_to_the_offline_teacher_and_corpus_saying_so_once(session, capsys):
    session.error = ConnectionError("unreachable")
    first, second = profiles.get_profile("gpu"), profiles.get_profile("GPU")
    assert first is second is profiles.PROFILES["gpu-offline"]
    assert first.teacher == "mini-gpt2" and first.corpus == "offline" and first.device == "cuda"
    assert first.device == "cuda" and first.seq_len >= profiles.PROFILES["cpu"].seq_len
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "gpu-offline" in lines[0]
    assert all(
        word in lines[0] for word in ("GPT-2", "WikiText-103", "HF_HUB_OFFLINE", "does not answer")
    )


def test_gpu_profile_uses_gpt2_and_wikitext_when_the_hub_answers(session, capsys):
    profile = profiles.get_profile("gpu")
    assert (profile.name, profile.teacher, profile.corpus) == ("gpu", "gpt2", "wikitext-103")
    assert capsys.readouterr().out == ""


def test_the_fallback_profile_loads_its_teacher_and_corpus_without_the_hub(
    session, monkeypatch, capsys
):
    session.error = ConnectionError("unreachable")
    built = []
    monkeypatch.setattr(
        teachers, "mini_gpt2", lambda profile, **kw: built.append(profile) or ("mini", "gpt2")
    )
    profile = profiles.get_profile("gpu")
    assert load_teacher(profile.teacher, profile) == ("mini", "gpt2")
    assert built == [profile] and profile.name == "gpu-offline" and profile.device == "cuda"
    assert teachers.profile_teacher(profile)[0] == "mini-gpt2"
    assert set(data.load_corpus(profile.corpus)) == set(data.SPLITS)
    assert session.urls == ["https://mirror.example/openai-community/gpt2/resolve/main/config.json"]


def test_the_fallback_keeps_a_micro_batch_smaller_than_the_measured_gpt2_one():
    # GPT-2-124M's KD peaks at 12.8 GiB with 4 x 1024 tokens in memory; the fallback's teacher
    # is smaller
    gpu, offline = profiles.PROFILES["gpu"], profiles.PROFILES["gpu-offline"]
    tokens_in_memory = {p.name: p.batch_size // p.grad_accum * p.seq_len for p in (gpu, offline)}
    assert tokens_in_memory["gpu-offline"] <= 2 * tokens_in_memory["gpu"]
    assert offline.teacher_width * offline.teacher_layers < gpu.teacher_width * gpu.teacher_layers
    assert offline.batch_size % offline.grad_accum == 0
