"""Evaluation: sliding-window perplexity, bits per byte, agreement, probes, the CLI and its errors.

Offline and fast: a byte-level BPE tokenizer trained here on a few sentences, tiny random GPT-2 and
Llama models, and hand-built models whose answers are known (uniform, bigram, induction oracle).
"""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch
from tiny_models import random_gpt2
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from hyena_lite import evaluate as ev
from hyena_lite import probes
from hyena_lite.cli import main
from hyena_lite.experiments.evaluate import load_model
from hyena_lite.profiles import get_profile

WORDS = (
    "river mountain lantern whisper garden silver candle harbor meadow thunder "
    "pebble orchard velvet ember willow compass falcon saddle thistle beacon"
).split()


def english(n_sentences: int, seed: int = 0) -> str:
    """Deterministic pseudo-English: sentences of words from WORDS, some of them not ASCII."""
    generator = torch.Generator().manual_seed(seed)
    sentences = []
    for _ in range(n_sentences):
        picks = torch.randint(
            len(WORDS), (int(torch.randint(4, 9, (1,), generator=generator)),), generator=generator
        )
        sentences.append(" ".join(WORDS[i] for i in picks).capitalize() + ".")
    return " ".join(sentences).replace("ember", "émber")


@pytest.fixture(scope="module")
def tokenizer():
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [english(300)],
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )


@pytest.fixture(scope="module")
def gpt2(tokenizer):
    return random_gpt2(len(tokenizer), 128, dropout=0.1, bos_token_id=0, eos_token_id=0).eval()


class Uniform(torch.nn.Module):
    """Equal logits for every token: perplexity is exactly the vocabulary size."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.config = SimpleNamespace(n_positions=1024)

    def forward(self, input_ids, **_):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab))


class Bigram(torch.nn.Module):
    """Logits depend on the current token only, so any window gives a token the same NLL."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = torch.nn.Embedding(vocab, vocab)

    def forward(self, input_ids, **_):
        return SimpleNamespace(logits=self.table(input_ids))


class Induction(torch.nn.Module):
    """The ideal in-context copier: predicts the token that followed the last earlier occurrence."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids, **_):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for b, row in enumerate(input_ids.tolist()):
            last: dict[int, int] = {}
            for t, token in enumerate(row):
                if token in last:
                    logits[b, t, row[last[token] + 1]] = 1.0
                last[token] = t
        return SimpleNamespace(logits=logits)


# --- windows, perplexity, bits per byte ---------------------------------------------------------


@pytest.mark.parametrize(
    "n,context,stride", [(10, 10, 5), (11, 4, 1), (100, 16, 8), (101, 16, 15), (37, 8, 3)]
)
def test_windows_score_every_target_exactly_once(n, context, stride):
    counts = [0] * n
    windows = ev.sliding_windows(n, context, stride)
    for begin, n_new in windows:
        assert 0 <= begin and begin + context <= n and 1 <= n_new <= context - 1
        for t in range(begin + context - n_new, begin + context):
            counts[t] += 1
    assert counts == [0] + [1] * (n - 1)
    # every later window keeps at least context - stride tokens of context
    assert all(context - n_new >= context - stride for _, n_new in windows[1:])


def test_window_arguments_are_checked():
    with pytest.raises(ValueError, match="stride must be in"):
        ev.sliding_windows(20, 8, 8)
    with pytest.raises(ValueError, match="fewer than one window"):
        ev.sliding_windows(5, 8, 4)


def test_perplexity_is_exp_mean_nll_by_hand(gpt2, tokenizer):
    text = english(6, seed=1)
    encoded = ev.encode_text(text, tokenizer)
    ids = encoded.ids
    result = ev.score_text(gpt2, tokenizer, text, context=len(ids), stride=1)
    with torch.no_grad():
        logits = gpt2(input_ids=ids[None]).logits[0, :-1]
    nll = torch.nn.functional.cross_entropy(logits, ids[1:], reduction="none").double()
    assert (
        result["tokens"] == len(ids) - 1 == encoded.n_text_tokens
    )  # the BOS token makes the first one count
    assert result["ppl"] == pytest.approx(math.exp(nll.mean()), rel=1e-5)
    assert result["bpb"] == pytest.approx(
        float(nll.sum()) / (math.log(2) * len(text.encode())), rel=1e-5
    )


def test_sliding_windows_give_each_token_one_nll(tokenizer):
    torch.manual_seed(0)
    model = Bigram(len(tokenizer))
    ids = ev.encode_text(english(20, seed=2), tokenizer).ids
    with torch.no_grad():
        full = torch.nn.functional.cross_entropy(
            model(ids).logits[:-1], ids[1:], reduction="none"
        ).double()
    for context, stride in [(16, 8), (16, 15), (9, 1)]:
        nll = ev.token_nll(model, ids, context, stride, batch_size=3)
        torch.testing.assert_close(nll, full, rtol=1e-5, atol=1e-6)


def test_windowed_transformer_nll_matches_explicit_windows(gpt2, tokenizer):
    ids = ev.encode_text(english(10, seed=3), tokenizer).ids
    context, stride = 24, 10
    nll = ev.token_nll(gpt2, ids, context, stride, batch_size=2)
    with torch.no_grad():
        for begin, n_new in ev.sliding_windows(len(ids), context, stride):
            logits = gpt2(input_ids=ids[None, begin : begin + context]).logits[0]
            for t in range(begin + context - n_new, begin + context):
                expected = torch.nn.functional.cross_entropy(logits[t - begin - 1], ids[t])
                assert float(nll[t - 1]) == pytest.approx(float(expected), rel=1e-4)


def test_copy_classes_split_the_targets_and_pool_back_to_the_perplexity(tokenizer):
    text = english(8, seed=6) + " " + english(8, seed=6)  # the second half repeats the first
    result = ev.score_text(Bigram(len(tokenizer)), tokenizer, text, context=64, stride=32)
    classes = result["by_class"]
    assert classes["copyable"]["tokens"] + classes["other"]["tokens"] == result["tokens"]
    assert classes["copyable"]["tokens"] > 0 and classes["other"]["tokens"] > 0
    nll = sum(math.log(c["ppl"]) * c["tokens"] for c in classes.values())
    assert math.exp(nll / result["tokens"]) == pytest.approx(result["ppl"], rel=1e-9)
    pooled = ev.pooled([result, result])["by_class"]
    assert pooled["copyable"]["tokens"] == 2 * classes["copyable"]["tokens"]
    assert pooled["other"]["ppl"] == pytest.approx(classes["other"]["ppl"])
    empty = ev.by_copy_class(torch.zeros(3, dtype=torch.float64), torch.arange(4), reach=8)
    assert empty["copyable"] == {"tokens": 0, "ppl": None} and empty["other"]["ppl"] == 1.0


def test_bits_per_byte_formula_and_uniform_model(tokenizer):
    assert ev.bits_per_byte(math.log(2) * 12, 6) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive byte count"):
        ev.bits_per_byte(1.0, 0)
    text = english(8, seed=4)
    assert len(text.encode()) > len(text)  # é takes two bytes: bytes, not characters, are counted
    result = ev.score_text(Uniform(len(tokenizer)), tokenizer, text, context=16)
    assert result["ppl"] == pytest.approx(len(tokenizer), rel=1e-6)
    assert result["bpb"] == pytest.approx(
        result["tokens"] * math.log2(len(tokenizer)) / len(text.encode())
    )


def test_token_budget_counts_the_bytes_it_covers(tokenizer):
    text = english(20, seed=5)
    encoded = ev.encode_text(text, tokenizer, max_tokens=50)
    assert encoded.n_text_tokens == 50 and len(encoded.ids) == 51
    assert encoded.ids[1:].tolist() == tokenizer(text, add_special_tokens=False)["input_ids"][:50]
    assert encoded.n_bytes == len(tokenizer.decode(encoded.ids[1:]).encode())


# --- agreement ----------------------------------------------------------------------------------


def test_agreement_of_a_model_with_itself_is_perfect(gpt2, tokenizer):
    text = english(10, seed=6)
    same = ev.score_text(gpt2, tokenizer, text, context=32, teacher=copy.deepcopy(gpt2))
    assert same["top1"] == 1.0 and same["kl"] == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(1)
    other = GPT2LMHeadModel(gpt2.config).eval()
    differ = ev.score_text(other, tokenizer, text, context=32, teacher=gpt2)
    assert differ["top1"] < 1.0 and differ["kl"] > 0.0 and differ["tokens"] == same["tokens"]
    # by hand on one window: the fraction of equal argmaxes and the mean KL(teacher || model)
    ids = ev.encode_text(text, tokenizer).ids[:32]
    with torch.no_grad():
        log_p = torch.log_softmax(gpt2(input_ids=ids[None]).logits[0, :-1], -1)
        log_q = torch.log_softmax(other(input_ids=ids[None]).logits[0, :-1], -1)
    one = ev.score_text(other, tokenizer, tokenizer.decode(ids[1:]), context=32, teacher=gpt2)
    assert one["top1"] == pytest.approx(
        (log_p.argmax(-1) == log_q.argmax(-1)).double().mean().item()
    )
    assert one["kl"] == pytest.approx(
        (log_p.exp() * (log_p - log_q)).sum(-1).mean().item(), rel=1e-4
    )


def test_score_ids_is_score_text_without_the_bytes(gpt2, tokenizer):
    text = english(12, seed=8)
    ids = ev.encode_text(text, tokenizer).ids
    of_text = ev.score_text(gpt2, tokenizer, text, context=32, stride=8)
    of_ids = ev.score_ids(gpt2, ids, context=32, stride=8)
    assert of_ids == {k: of_text[k] for k in ("tokens", "ppl", "by_class")}
    with pytest.raises(ValueError, match="fewer than one window of 32"):
        ev.score_ids(gpt2, ids[:20], context=32)


def test_score_texts_pools_agreement_token_weighted(gpt2, tokenizer):
    torch.manual_seed(2)
    other = GPT2LMHeadModel(gpt2.config).eval()
    texts = {"short": english(6, seed=9), "long": english(18, seed=10)}
    report = ev.score_texts(other, tokenizer, texts, context=32, teacher=gpt2)
    rows = report["texts"].values()
    for key in ("kl", "top1"):
        by_hand = sum(r[key] * r["tokens"] for r in rows) / sum(r["tokens"] for r in rows)
        assert report[key] == pytest.approx(by_hand) and report[key] > 0
    assert "kl" not in ev.score_texts(other, tokenizer, texts, context=32)


def test_agreement_needs_the_same_tokenizer(tokenizer):
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["something else entirely"] * 5,
        vocab_size=280,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    other = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    with pytest.raises(ValueError, match="vocabularies differ"):
        ev.check_same_tokenizer(tokenizer, other)


# --- probes -------------------------------------------------------------------------------------


def test_cloze_examples_are_deterministic_and_end_in_the_word(tokenizer):
    texts = [english(200, seed=7), english(200, seed=8)]
    examples = probes.cloze_examples(texts, tokenizer, n=10, length=24)
    assert examples == probes.cloze_examples(texts, tokenizer, n=10, length=24)
    assert len(examples) == 10
    for example in examples:
        assert len(example.ids) == 24
        assert tokenizer.decode(example.ids[-example.n_target :]) == " " + example.word
        assert (
            example.word.lower() in {w.replace("ember", "émber") for w in WORDS}
            or example.word.isalpha()
        )


def test_cloze_accuracy_on_a_hand_built_case(tokenizer):
    passage = "Silver lantern whisper thistle beacon falcon saddle."
    text = " ".join([passage] * 30)  # every sentence-final word repeats what came before
    examples = probes.cloze_examples([text], tokenizer, n=5, length=20)
    assert examples and all(e.word == "saddle" for e in examples)
    assert probes.cloze_accuracy(Induction(len(tokenizer)), examples) == 1.0
    assert probes.cloze_accuracy(Uniform(len(tokenizer)), examples) == 0.0


def test_copying_and_recall_on_a_hand_built_case(tokenizer):
    vocab, start = probes.ordinary_tokens(tokenizer), tokenizer.bos_token_id
    assert start not in vocab.tolist()
    ids, scored = probes.copy_batch(vocab, start, length=8, n=3)
    assert (
        ids.shape == (3, 17) and torch.equal(ids[:, 1:9], ids[:, 9:]) and int(scored.sum()) == 3 * 7
    )
    ids, scored = probes.mqar_batch(vocab, start, pairs=5, n=3)
    assert ids.shape == (3, 21) and int(scored.sum()) == 3 * 5
    oracle, blind = Induction(len(tokenizer)), Uniform(len(tokenizer))
    assert [p["accuracy"] for p in probes.copy_curve(oracle, tokenizer, [4, 16])] == [1.0, 1.0]
    assert [p["accuracy"] for p in probes.mqar_curve(oracle, tokenizer, [2, 8])] == [1.0, 1.0]
    assert probes.copy_curve(blind, tokenizer, [16])[0]["accuracy"] < 0.1
    assert probes.mqar_curve(blind, tokenizer, [8])[0]["accuracy"] < 0.1


def test_length_curve_of_a_uniform_model_is_flat(tokenizer):
    ids = ev.encode_text(english(40, seed=9), tokenizer).ids
    curve = ev.length_curve(Uniform(len(tokenizer)), ids, length=64, bins=6)
    assert curve["position"][-1] == 63 and curve["windows"] == len(ids) // 64
    assert curve["ppl"] == pytest.approx([len(tokenizer)] * len(curve["ppl"]))


def test_max_length_reads_the_config(gpt2, tokenizer):
    assert ev.max_length(gpt2) == 128
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=96,
        )
    )
    assert ev.max_length(llama) == 96


# --- the command line and its errors ------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory, gpt2, tokenizer):
    folder = tmp_path_factory.mktemp("model")
    gpt2.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_cli_writes_the_json(saved, tmp_path):
    text = tmp_path / "story.txt"
    text.write_text(english(60, seed=10), encoding="utf-8")
    out = tmp_path / "eval.json"
    code = main(
        [
            "evaluate",
            "--model",
            f"mine={saved}",
            "--text",
            str(text),
            "--teacher",
            str(saved),
            "--profile",
            "smoke",
            "--context",
            "32",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert (
        result["meta"]["command"].startswith("python -m hyena_lite evaluate --model mine=")
        and result["meta"]["profile"] == "smoke"
    )
    report = result["models"]["mine"]
    scored = report["texts"][str(text)]
    assert set(scored) == {"tokens", "bytes", "ppl", "bpb", "by_class"}
    assert sum(c["tokens"] for c in scored["by_class"].values()) == scored["tokens"]
    for name, one in scored["by_class"].items():  # one text pooled: itself
        pooled_class = report["pooled"]["files"]["by_class"][name]
        assert pooled_class == {**one, "ppl": pytest.approx(one["ppl"])}
    assert report["agreement"][str(text)]["top1"] == 1.0
    assert (
        0.0 <= report["cloze"]["accuracy"] <= 1.0
        and report["recall"]["copy"]
        and report["recall"]["mqar"]
    )
    assert report["length"]["length"] == 128


def test_cli_eval_tokens_overrides_the_profiles_budget(saved, tmp_path, tokenizer, capsys):
    text = tmp_path / "story.txt"
    text.write_text(english(60, seed=10), encoding="utf-8")
    scored = {}
    for budget in ("100", "0"):
        out = tmp_path / f"eval{budget}.json"
        argv = ["evaluate", "--model", f"mine={saved}", "--text", str(text), "--tasks", "ppl"]
        argv += ["--context", "32", "--profile", "smoke", "--eval-tokens", budget]
        assert main([*argv, "--json", str(out)]) == 0
        scored[budget] = json.loads(out.read_text())["models"]["mine"]["texts"][str(text)]
    assert scored["100"]["tokens"] == 100
    whole = ev.encode_text(text.read_text(), tokenizer).n_text_tokens
    assert whole > 100 and scored["0"]["tokens"] == whole
    with pytest.raises(SystemExit):
        main([*argv, "--eval-tokens", "-1", "--json", str(tmp_path / "no.json")])
    assert "--eval-tokens" in capsys.readouterr().err


def test_errors_say_what_is_wrong(saved, tmp_path, gpt2, tokenizer):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        main(
            [
                "evaluate",
                "--model",
                str(saved),
                "--text",
                str(empty),
                "--json",
                str(tmp_path / "x.json"),
                "--debug",  # the error itself, not the one line the command line prints
            ]
        )
    with pytest.raises(
        ValueError, match="fewer than one window of 64: give a longer text or a smaller --context"
    ):
        ev.score_text(gpt2, tokenizer, "A short text.", context=64, name="short.txt")
    with pytest.raises(ValueError, match="unknown model 'no-such-model'"):
        load_model("no-such-model", get_profile("smoke"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(str(tmp_path), get_profile("smoke"))
    with pytest.raises(ValueError, match="needs a teacher"):
        ev.evaluate_model(
            gpt2, tokenizer, {"t": english(40)}, get_profile("smoke"), tasks=["agreement"]
        )
    with pytest.raises(ValueError, match="unknown tasks"):
        ev.evaluate_model(
            gpt2, tokenizer, {"t": english(40)}, get_profile("smoke"), tasks=["ppl", "vibes"]
        )


def test_window_bits_per_byte_is_the_summed_nll_over_the_token_bytes():
    from hyena_lite.data import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    nbytes = ev.token_byte_lengths(tokenizer)
    assert int(nbytes[tokenizer.convert_tokens_to_ids("Ġthe")]) == 4
    assert int(nbytes[tokenizer.eos_token_id]) == 0
    model = random_gpt2(len(tokenizer), 16, width=8, layers=1, seed=0).eval()
    ids = torch.tensor(tokenizer.encode(" the cat sat on the mat, and the dog ran off.") * 2)
    window = ids[:16].view(1, 16)
    with torch.no_grad():
        logits = model(input_ids=window).logits[0, :-1]
    nll = torch.nn.functional.cross_entropy(logits, window[0, 1:], reduction="sum")
    expected = ev.bits_per_byte(float(nll), int(nbytes[window[0, 1:]].sum()))
    got = ev.window_bits_per_byte(model, ids[:16], 16, nbytes)
    assert abs(got - expected) < 1e-5


def test_texts_windows_take_an_equal_share_of_each_text_from_its_start(tokenizer):
    texts = {"a": english(40, seed=5), "b": english(40, seed=6)}
    windows = ev.texts_windows(texts, tokenizer, seq_len=8, max_tokens=32)
    assert windows.shape == (4, 8) and windows.dtype == torch.long  # 16 tokens of each text
    for i, text in enumerate(texts.values()):
        assert torch.equal(
            windows[2 * i : 2 * i + 2].flatten(), ev.encode_text(text, tokenizer).ids[:16]
        )
    with pytest.raises(ValueError, match="fewer than one window of 4096"):
        ev.texts_windows(texts, tokenizer, seq_len=4096, max_tokens=32)
    with pytest.raises(ValueError, match="no texts"):
        ev.texts_windows({}, tokenizer, seq_len=8, max_tokens=32)
