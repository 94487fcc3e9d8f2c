"""hyena_lite.trimmed_tokenizer: GPT-2's BPE cut to a corpus's most frequent tokens, closed under
the merge tree; exact round trips, GPT-2's own ids for words it keeps whole, smaller pieces else."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hyena_lite import probes
from hyena_lite.data import gpt2_tokenizer, load_corpus, tokenizer_dir
from hyena_lite.trimmed_tokenizer import (
    build_trimmed,
    gpt2_ids,
    kept_ids,
    load_trimmed,
    merge_parents,
    read_gpt2_bpe,
    trimmed_gpt2_tokenizer,
)

SIZE = 4096


@pytest.fixture(scope="module")
def trimmed():
    return trimmed_gpt2_tokenizer(SIZE)


@pytest.fixture(scope="module")
def validation_text() -> str:
    return "\n\n".join(load_corpus("offline")["validation"]["text"])


def test_a_toy_merge_tree_keeps_the_frequent_tokens_with_their_ancestors():
    # bytes a b c, merges a+b -> ab, ab+c -> abc; <|endoftext|> has no parents
    vocab = {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4, "bc": 5, "<|endoftext|>": 6}
    merges = [("a", "b"), ("ab", "c"), ("b", "c")]
    assert merge_parents(vocab, merges) == {3: (0, 1), 4: (3, 2), 5: (1, 2)}
    counts = np.array([0, 0, 0, 1, 9, 5, 0])
    # base (a b c eot) is 4; abc needs ab too (6); bc would make 7
    assert kept_ids(counts, vocab, merges, 6) == [0, 1, 2, 3, 4, 6]
    with pytest.raises(ValueError, match="at least 4 tokens"):
        kept_ids(counts, vocab, merges, 3)
    with pytest.raises(ValueError, match="fill only 7 of 8"):
        kept_ids(counts, vocab, merges, 8)


def test_the_trimmed_vocabulary_is_closed_under_gpt2_merges(trimmed):
    vocab, merges = read_gpt2_bpe(tokenizer_dir())
    parents = merge_parents(vocab, merges)
    kept = set(gpt2_ids(trimmed).tolist())
    assert len(trimmed) == len(kept) == SIZE
    assert all(set(parents[t]) <= kept for t in kept if t in parents)
    assert set(range(256)) <= kept and trimmed.eos_token_id == SIZE - 1 == trimmed.pad_token_id
    assert trimmed.convert_ids_to_tokens(SIZE - 1) == "<|endoftext|>"


def test_decoding_the_encoding_gives_the_text_back(trimmed, validation_text):
    ids = trimmed(validation_text, add_special_tokens=False)["input_ids"]
    assert max(ids) < SIZE and trimmed.decode(ids) == validation_text
    odd = "naïve café – “quoted” 数学 🙂\ttabs\r\n"
    assert trimmed.decode(trimmed(odd)["input_ids"]) == odd  # nothing is unknown


def test_words_kept_whole_tokenise_as_gpt2_and_the_others_into_kept_pieces(
    trimmed, validation_text
):
    gpt2 = gpt2_tokenizer()
    to_gpt2 = gpt2_ids(trimmed)
    kept = set(to_gpt2.tolist())
    words = gpt2.backend_tokenizer.pre_tokenizer.pre_tokenize_str(validation_text[:300_000])
    same = split = 0
    for word, _ in dict.fromkeys(words):
        theirs = gpt2.backend_tokenizer.model.tokenize(word)
        ours = trimmed.backend_tokenizer.model.tokenize(word)
        mapped = [int(to_gpt2[t.id]) for t in ours]
        if all(t.id in kept for t in theirs):
            assert mapped == [t.id for t in theirs], word
            same += 1
        else:
            # other pieces, kept ones, that spell the word (sometimes fewer than GPT-2's: a
            # missing early merge can let a later one apply)
            assert "".join(t.value for t in ours) == word and mapped != [t.id for t in theirs]
            split += 1
    assert same > 1000 and split > 100  # both cases are exercised


def test_the_build_is_deterministic(tmp_path):
    counts = np.bincount(np.arange(300, 2000) % 1500 + 256, minlength=50257)
    build_trimmed(tmp_path / "a", counts, 600)
    build_trimmed(tmp_path / "b", counts, 600)
    for name in ("vocab.json", "merges.txt", "gpt2_ids.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert len(load_trimmed(tmp_path / "a")) == 600
    assert json.loads((tmp_path / "a" / "trim.json").read_text())["size"] == 600


def test_gpt2_itself_maps_to_itself_and_a_copy_without_the_map_is_refused(trimmed, tmp_path):
    assert torch.equal(gpt2_ids(gpt2_tokenizer()), torch.arange(50257))
    trimmed.save_pretrained(tmp_path)  # a tokenizer saved beside a model: no id map
    with pytest.raises(ValueError, match="neither GPT-2's tokenizer nor a trimmed one"):
        gpt2_ids(load_trimmed(tmp_path))


def test_the_copy_probe_draws_from_the_teachers_vocabulary(trimmed):
    class Recorder(torch.nn.Module):
        """A model that records the ids it is given and predicts nothing useful."""

        def __init__(self):
            super().__init__()
            self.seen = []
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, logits_to_keep=0):
            self.seen.append(input_ids)
            logits = torch.zeros(*input_ids.shape, len(trimmed))
            return type("Out", (), {"logits": logits})()

    model = Recorder()
    probes.copy_curve(model, trimmed, [64], n=8)
    ids = torch.cat(model.seen)
    assert int(ids.max()) == SIZE - 1 and (ids[:, 1:] < SIZE - 1).all()  # start, then ordinary
    assert (ids[:, 0] == trimmed.eos_token_id).all()
