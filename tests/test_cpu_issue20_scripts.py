"""scripts/hyena_copy_capacity.py, cpu_token_scaling.py, cpu_transfer_budget.py and
alignment_budget_cpu.py on the smoke profile (or a tiny random teacher): the files they write hold
what their chapters and notes read."""

from __future__ import annotations

import json
import math
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_copy_capacity_records_the_probes_before_and_after_each_part(load_script, tmp_path):
    capacity = load_script("hyena_copy_capacity")
    out = tmp_path / "capacity.json"
    assert capacity.main(["--smoke", "--n", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["commit"] and report["profile"] == "smoke"
    assert list(report["models"]) == list(capacity.STUDENTS)
    for model in report["models"].values():
        curve = model["curve"]
        assert len(curve) == capacity.PARTS + 1 and curve[0]["tokens"] == 0
        assert [p["tokens"] for p in curve] == sorted({p["tokens"] for p in curve})
        assert all(0 <= p["copy"] <= 1 and 0 <= p["mqar"] <= 1 for p in curve)
        assert all(math.isfinite(p["train_loss"]) for p in curve[1:])


def test_token_scaling_scores_the_student_and_the_control_at_each_budget(
    load_script, tmp_path, monkeypatch
):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # it imports cpu_mix_probe, as `python scripts/..`
    scaling = load_script("cpu_token_scaling")
    out = tmp_path / "scaling.json"
    assert scaling.main(["--smoke", "--eval-tokens", "300", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["data_mix"]["recall"] == 0.25 and len(report["budgets"]) == 1
    (budget,) = report["budgets"].values()
    models = budget["models"]
    assert set(models) == {"distilled", "teacher_ft"}
    ratio = models["distilled"]["in_domain"]["ppl"] / models["teacher_ft"]["in_domain"]["ppl"]
    assert math.isclose(budget["distilled_over_teacher_ft_in"], ratio)
    assert all(m["out_of_domain"]["ppl"] > 1 for m in models.values())


def test_transfer_budget_scores_every_arm_against_the_control(load_script, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # it imports cpu_mix_probe, as `python scripts/..`
    budget = load_script("cpu_transfer_budget")
    out = tmp_path / "transfer.json"
    assert budget.main(["--smoke", "--eval-tokens", "300", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["commit"] and report["transfer_tokens_longer"] == report["tokens_per_model"]
    models = report["models"]
    assert set(models) == {
        "teacher_ft",
        "best (progressive)",
        "transfer",
        "transfer, longer",
        "transfer, same total",
    }
    control = models["teacher_ft"]["in_domain"]["ppl"]
    for label in ("transfer", "transfer, longer"):
        assert math.isclose(
            models[label]["over_teacher_ft_in"], models[label]["in_domain"]["ppl"] / control
        )
        assert "transfer" in models[label]["ppl_after"]


def test_alignment_budget_writes_each_layers_curve(load_script, tmp_path):
    budget = load_script("alignment_budget_cpu")
    out = tmp_path / "align.json"
    argv = ["--smoke", "--layers", "0,2", "--seq", "32", "--train-windows", "8"]
    assert (
        budget.main([*argv, "--valid-windows", "2", "--checkpoints", "2,4", "--json", str(out)])
        == 0
    )
    report = json.loads(out.read_text())
    assert report["commit"] and set(report["layers"]) == {"0", "2"}
    for layer in report["layers"].values():
        assert [p["step"] for p in layer["curve"]] == [0, 2, 4]
        assert [p["tokens"] for p in layer["curve"]] == [0, 2 * 4 * 32, 4 * 4 * 32]
        assert all(math.isfinite(p["nmse"]) and p["nmse"] >= 0 for p in layer["curve"])
        assert all("nmse_ood" not in p for p in layer["curve"])  # without --out-of-domain


def test_mixed_training_windows_take_half_from_the_broad_text(load_script):
    from types import SimpleNamespace

    from hyena_lite.data import gpt2_tokenizer

    budget = load_script("alignment_budget_cpu")
    tokenizer = gpt2_tokenizer()
    args = SimpleNamespace(train_windows=6, seq=16, train_text="corpus")
    corpus = budget.training_windows(tokenizer, args)
    mixed = budget.training_windows(
        tokenizer, SimpleNamespace(**{**vars(args), "train_text": "mixed"})
    )
    broad = budget.windows(tokenizer, "broad", 3, 16, seed=0)
    assert corpus.shape == mixed.shape == (6, 16)
    rows = {tuple(r) for r in mixed.tolist()}
    assert {tuple(r) for r in broad.tolist()} <= rows  # the broad half, shuffled in
    assert len(rows & {tuple(r) for r in corpus.tolist()}) == 3  # the corpus half
    registers = budget.training_windows(
        tokenizer, SimpleNamespace(**{**vars(args), "train_text": "mixed_registers"})
    )
    everyday = budget.windows(tokenizer, "registers", 3, 16, seed=0)
    assert {tuple(r) for r in everyday.tolist()} <= {tuple(r) for r in registers.tolist()}
    assert not {tuple(r) for r in everyday.tolist()} & rows  # not the Python documentation
    speech = budget.windows(tokenizer, "ood/speech", 2, 16, seed=1)  # one text alone
    assert speech.shape == (2, 16)
    assert tokenizer.decode(speech[0]) in budget.out_of_domain_texts()["ood/speech"]


def test_mixer_capacity_aligns_each_variant_on_the_same_pairs(load_script, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # it imports alignment_budget_cpu
    capacity = load_script("mixer_capacity_cpu")
    out = tmp_path / "capacity.json"
    argv = ["--smoke", "--layers", "0", "--seq", "32", "--train-windows", "8"]
    variants = "recipe,hyena_lm,l_max_1024"
    argv += ["--valid-windows", "2", "--checkpoints", "2", "--variants", variants]
    assert capacity.main([*argv, "--out-of-domain", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    curve = report["variants"]["recipe"]["layers"]["0"]["curve"]
    assert all(set(p) == {"step", "tokens", "nmse", "nmse_ood"} for p in curve)
    assert curve[0]["nmse_ood"] != curve[0]["nmse"]  # other windows
    assert list(report["variants"]) == variants.split(",")
    assert report["variants"]["hyena_lm"]["hyena"] == {"emb_dim": 33, "w": 14.0}
    starts = {v["layers"]["0"]["curve"][0]["nmse"] for v in report["variants"].values()}
    assert len(starts) == 3  # each variant's own mixer, scored on the same held-out pairs
    sizes = [v["mixer_parameters"] for v in report["variants"].values()]
    assert sizes[1] > sizes[0]  # 16 bands: a wider first layer of the filter network
    per_text = tmp_path / "per_text.json"
    argv = [*argv[:-1], "recipe", "--out-of-domain", "--per-text", "--json", str(per_text)]
    assert capacity.main(argv) == 0
    curve = json.loads(per_text.read_text())["variants"]["recipe"]["layers"]["0"]["curve"]
    texts = {f"nmse_ood_{name}" for name in ("technical", "narrative", "speech")}
    assert all(set(p) == {"step", "tokens", "nmse", "nmse_ood"} | texts for p in curve)


def test_filter_settings_train_each_arm_with_its_hyena_settings(load_script, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # it imports cpu_mix_probe
    filters = load_script("cpu_filter_settings")
    out = tmp_path / "filters.json"
    argv = ["--smoke", "--eval-tokens", "300", "--variants", "recipe,hyena_lm_l_max_context"]
    assert filters.main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    models = report["models"]
    assert list(models) == ["teacher_ft", "recipe", "hyena_lm_l_max_context"]
    assert models["hyena_lm_l_max_context"]["hyena"]["l_max"] == report["context"]
    control = models["teacher_ft"]["in_domain"]["ppl"]
    assert math.isclose(
        models["recipe"]["over_teacher_ft_in"], models["recipe"]["in_domain"]["ppl"] / control
    )
    assert (
        models["recipe"]["in_domain"]["ppl"] != models["hyena_lm_l_max_context"]["in_domain"]["ppl"]
    )


def test_stage_mix_trains_both_stages_from_the_recipes_weights(load_script, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # it imports cpu_mix_probe
    probe = load_script("cpu_stage_mix")
    out = tmp_path / "stage_mix.json"
    assert probe.main(["--smoke", "--eval-tokens", "300", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    dropped, kept = (report["stages"][name] for name in ("corpus_dropped", "corpus_kept"))
    assert abs(dropped["data_mix"]["corpus"]) < 1e-9 and kept["data_mix"]["corpus"] > 0.1
    assert dropped["data_mix"]["recall"] == kept["data_mix"]["recall"] == 0.25
    assert dropped["tokens"] == kept["tokens"] == report["stage_tokens"]
    assert dropped["in_domain"]["ppl"] != kept["in_domain"]["ppl"]  # different rows, same start
    assert report["recipe"]["in_domain"]["ppl"] not in (
        dropped["in_domain"]["ppl"],
        kept["in_domain"]["ppl"],
    )


def test_first_token_swap_aligns_both_arms_from_the_same_seed(load_script, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # it imports alignment_budget_cpu
    swap = load_script("first_token_swap_cpu")
    out = tmp_path / "swap.json"
    assert swap.main(["--smoke", "--layers", "0-1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["commit"] and list(report["arms"]) == ["plain", "first_token"]
    plain, first = report["arms"]["plain"], report["arms"]["first_token"]
    for arm in (plain, first):
        for curve in (arm["alignment"][layer]["curve"] for layer in ("0", "1")):
            assert [p["step"] for p in curve] == [0, 4] and all(p["nmse"] > 0 for p in curve)
        assert sorted(arm["drift"]["hidden"]) == ["0", "1", "2"]  # each swapped block, the last
    # the swapped blocks' first token is the teacher's exactly with the path, not without it
    for block in ("0", "1", "2"):
        assert first["drift"]["first_token"][block] < 1e-8 < plain["drift"]["first_token"][block]
    assert swap.layer_list("3,5") == [3, 5] and swap.layer_list("0-2") == [0, 1, 2]
    counts = first["massive_tokens"]
    assert counts["teacher"] == 0 and counts["of"] == 4 * 31  # a random tiny teacher has none
