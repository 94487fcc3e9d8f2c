"""The fast path equals the plain path; the timing helper returns medians; the benchmark CLI writes
documented JSON."""

import json

import pytest
import torch

from hyena_lite import provenance
from hyena_lite.cli import main
from hyena_lite.experiments import bench


def test_measure_returns_the_median() -> None:
    ticks = iter([0.0, 0.005, 1.0, 1.001, 2.0, 2.003])  # calls of 5, 1 and 3 ms
    m = bench.measure(lambda: None, "cpu", warmup=1, repeats=3, clock=lambda: next(ticks))
    assert (
        m.times_ms == pytest.approx([5.0, 1.0, 3.0])
        and m.median_ms == pytest.approx(3.0)
        and m.peak_mb is None
    )
    with pytest.raises(ValueError, match="repeats >= 1"):
        bench.measure(lambda: None, "cpu", repeats=0)


def test_kv_cache_and_recompute_decoders_agree() -> None:
    torch.manual_seed(0)
    model = bench.gpt2_teacher(64, n_layer=2, n_embd=16, n_head=2, vocab_size=50)
    prompt = torch.randint(0, 50, (1, 10))
    cached, recompute = bench.DECODERS["kv_cache"](model), bench.DECODERS["recompute"](model)
    with torch.no_grad():
        a, b = cached.prefill(prompt), recompute.prefill(prompt)
        for _ in range(3):
            assert torch.allclose(a, b, atol=1e-4)
            token = a.argmax(-1, keepdim=True)
            a, b = cached.step(token), recompute.step(token)


def test_model_and_generate_benchmarks_give_rows() -> None:
    torch.manual_seed(0)
    model = bench.gpt2_teacher(64, n_layer=1, n_embd=16, n_head=2, vocab_size=50)
    rows = bench.benchmark_model({"teacher": model}, [8, 16], warmup=0, repeats=2)
    assert [r["L"] for r in rows] == [8, 16] and all(r["teacher_tokens_per_s"] > 0 for r in rows)
    rows = bench.benchmark_generate(
        {"t": (model, "kv_cache"), "r": (model, "recompute")}, [8], new_tokens=2, warmup=1
    )
    assert (
        rows[0]["context"] == 8 and rows[0]["t_ms_per_token"] > 0 and rows[0]["r_ms_per_token"] > 0
    )


def test_crossover_interpolates_on_log_axes() -> None:
    rows = [
        {"L": 1, "a": 1.0, "b": 4.0},
        {"L": 4, "a": 4.0, "b": 4.0 * 0.25},
        {"L": 16, "a": 16.0, "b": 2.0},
    ]
    assert bench.crossover(rows, "L", "a", "b") == pytest.approx(
        2.0
    )  # log ratio +log4 at 1, -log4 at 4
    assert bench.crossover(rows, "L", "b", "a") == 1.0  # a is no slower from the start
    assert bench.crossover([{"L": 1, "a": 1.0, "b": 2.0}], "L", "a", "b") is None


def test_hyena_bytes_grow_like_the_fft_size() -> None:
    small, large = bench.hyena_forward_bytes(768, 1024), bench.hyena_forward_bytes(768, 2048)
    assert large == 2 * small > 0
    assert bench.hyena_forward_bytes(768, 1025) > small  # 1025 pads to an FFT of 4096


def test_cli_writes_operator_json(tmp_path) -> None:
    out = tmp_path / "bench.json"
    code = main(
        [
            "benchmark",
            "--what",
            "operator",
            "--lengths",
            "16",
            "32",
            "--device",
            "cpu",
            "--d-model",
            "16",
            "--heads",
            "2",
            "--warmup",
            "1",
            "--repeats",
            "2",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads(out.read_text())
    assert set(provenance.KEYS) | {"device", "operator"} <= set(results)
    assert results["command"].startswith("python -m hyena_lite benchmark --what operator")
    assert (
        results["versions"]["torch"] == torch.__version__ and results["device"]["device"] == "cpu"
    )
    section = results["operator"]
    assert section["command"].startswith(
        "python -m hyena_lite benchmark --what operator --lengths 16 32 --device cpu"
    )
    assert section["settings"]["d_model"] == 16
    assert [row["L"] for row in section["rows"]] == [16, 32]
    for row in section["rows"]:
        for key in (
            "attn_ms",
            "hyena_ms",
            "hyena_plain_ms",
            "attn_fwdbwd_ms",
            "hyena_fwdbwd_ms",
            "hyena_bytes",
        ):
            assert row[key] > 0, key


def test_unknown_choices_fail_clearly() -> None:
    with pytest.raises(ValueError, match="unknown benchmark"):
        bench.BenchmarkConfig(["speed"], [16])
    with pytest.raises(ValueError, match="unknown dtype"):
        bench.BenchmarkConfig(["operator"], [16], dtype="int8")


def test_merge_results_joins_sections_of_one_machine() -> None:
    env = {"created": "t", "commit": "c", "device": {"gpu": "G"}, "versions": {"torch": "1"}}
    merged = bench.merge_results(
        {**env, "operator": {"rows": [1]}}, {**env, "model": {"rows": [2]}}
    )
    assert merged["operator"] == {"rows": [1]} and merged["model"] == {"rows": [2]}
    with pytest.raises(ValueError, match="different hardware"):
        bench.merge_results(env, {**env, "device": {"gpu": "H"}})


def test_kv_cache_decoder_really_grows_the_cache():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32)
    ).eval()
    decoder = bench.DECODERS["kv_cache"](model)
    prompt = torch.randint(0, 64, (1, 5))
    with torch.no_grad():
        decoder.prefill(prompt)
        logits = decoder.step(torch.tensor([[3]]))
        full = model(torch.cat([prompt, torch.tensor([[3]])], dim=1)).logits[:, -1]
    assert decoder.cache.get_seq_length() == 6
    assert torch.allclose(logits, full, atol=1e-5)
