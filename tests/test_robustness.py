"""Issue 21's reproductions, one test each: every mistake a clear message, every run recoverable,
every cache keyed by what made it. Tiny random GPT-2s, the smoke profile, a private HYENA_LITE_HOME;
a few seconds in all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch
from tiny_models import private_home, save_tiny_gpt2
from transformers import GPT2Config, GPT2LMHeadModel

from hyena_lite import assets, data, evaluate, get_profile, profiles, runs, teachers
from hyena_lite.cli import CHECKS, COMMANDS, main
from hyena_lite.experiments import distill as distill_command
from hyena_lite.experiments.evaluate import load_model
from hyena_lite.fftconv import fftconv
from hyena_lite.generation import generate
from hyena_lite.models import convert
from hyena_lite.training import TrainConfig, TrainingDiverged, train

SEQ = 16


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run several times faster on one thread than on two of a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two tiny GPT-2 teachers (different weights) saved as folders, and a short text file."""
    root = tmp_path_factory.mktemp("models")
    text = root / "text.txt"
    text.write_text(
        "It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, "
        "must be in want of a wife. " * 20,
        encoding="utf-8",
    )
    return {
        "a": save_tiny_gpt2(root / "a", seed=0),
        "b": save_tiny_gpt2(root / "b", seed=1),
        "text": text,
    }


@pytest.fixture
def tiny_teachers(folders, monkeypatch):
    """Teacher names 'a' and 'b' load the tiny folders with the offline tokenizer (whose corpus
    tokens are cached), and the smoke profile validates on fewer tokens: a distill command takes a
    second or two."""

    def load(name, profile=None):
        model = GPT2LMHeadModel.from_pretrained(folders[name]).eval()
        return model, data.gpt2_tokenizer()

    monkeypatch.setattr(teachers, "load_teacher", load)
    monkeypatch.setitem(
        profiles.PROFILES, "smoke", get_profile("smoke").replace(seq_len=32, eval_tokens=256)
    )


def tiny_model(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=40, n_positions=SEQ, n_embd=16, n_layer=1, n_head=2)
    )


def batches(start: int):
    while True:
        yield torch.randint(0, 40, (2, SEQ), generator=torch.Generator().manual_seed(start))
        start += 1


def lm_loss(model, batch):
    return model(input_ids=batch, labels=batch).loss, {}


def config(out, **changes) -> TrainConfig:
    return TrainConfig(
        **{
            "steps": 6,
            "lr": 1e-3,
            "batch_size": 2,
            "seq_len": SEQ,
            "device": "cpu",
            "progress": False,
            "out_dir": str(out) if out else None,
            **changes,
        }
    )


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """The exit code of `python -m hyena_lite ARGV` run in this process, and what it printed on
    stderr."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    return code, capsys.readouterr().err


# 1
# -------------------------------------------------------------------------------------------------
def test_a_finished_run_is_never_reused_for_another_teacher_or_student(
    tiny_teachers, tmp_path, capsys
):
    out = str(tmp_path / "runs")
    common = [
        "distill",
        "--stage",
        "ce",
        "--profile",
        "smoke",
        "--tokens",
        "256",
        "--out",
        out,
        "--no-progress",
    ]
    assert run_cli([*common, "--model", "a"], capsys)[0] == 0
    code, err = run_cli([*common, "--model", "b"], capsys)
    assert code != 0 and "another config" in err and "teacher_weights" in err, err
    code, err = run_cli([*common, "--model", "a", "--hyena-layers", "0"], capsys)
    assert code != 0 and "another config" in err and "load_state_dict" not in err, err
    profile = get_profile("smoke")
    defaults = {
        distill_command.default_out(profile, t, layers, recall)
        for t, layers, recall in [
            (None, None, 0.0),
            ("a", None, 0.0),
            ("b", None, 0.0),
            (None, [0], 0.0),
            ("a", [0], 0.0),
            (None, None, 0.25),
            (None, [0], 0.25),
        ]
    }
    assert len(defaults) == 7, "each teacher, choice of layers and mix has its own default folder"


def test_a_run_from_before_run_identities_is_set_aside_not_reused(tmp_path, capsys):
    train(tiny_model(), lm_loss, batches, config(tmp_path / "run", steps=2))
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    del log["config"]["context"]  # as hyena_lite wrote it before
    (tmp_path / "run" / "log.json").write_text(json.dumps(log))
    result = train(tiny_model(seed=1), lm_loss, batches, config(tmp_path / "run", steps=2))
    assert not result.skipped and result.finished
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.unverified-")]
    assert (
        len(aside) == 1
        and (aside[0] / "model.pt").exists()
        and "moved to" in capsys.readouterr().err
    )


# 2
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["-1", "0"])
def test_evaluate_refuses_a_batch_size_below_one(folders, tmp_path, capsys, size):
    code, err = run_cli(
        [
            "evaluate",
            "--model",
            str(folders["a"]),
            "--text",
            str(folders["text"]),
            "--tasks",
            "ppl",
            "--profile",
            "smoke",
            "--batch-size",
            size,
            "--json",
            str(tmp_path / "r.json"),
        ],
        capsys,
    )
    assert code == 2 and "--batch-size" in err and ">= 1" in err, err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "runs").exists()


# 3
# -------------------------------------------------------------------------------------------------
def test_nan_gradients_stop_the_run_and_never_reach_a_checkpoint(tmp_path):
    def poisoned(model, batch):
        loss, _ = lm_loss(model, batch)
        if (
            poisoned.calls == 3
        ):  # a finite loss whose gradient is NaN: d sqrt(x)/dx at 0 is inf, times 0
            loss = loss + (next(model.parameters()).flatten()[0] * 0).sqrt()
        poisoned.calls += 1
        return loss, {}

    poisoned.calls = 0
    with pytest.raises(
        TrainingDiverged,
        match=r"gradients became non-finite.*step 3.*last good checkpoint \(step 3\)",
    ):
        train(tiny_model(), poisoned, batches, config(tmp_path, save_every=1))
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        state = torch.load(tmp_path / name, weights_only=False)
        assert all(torch.isfinite(t).all() for t in state["model"].values()), name
    assert torch.load(tmp_path / "checkpoint.prev.pt", weights_only=False)["step"] == 2, (
        "the last two are kept"
    )


# 4 (the loop's part: the mini teacher's pre-training is a TrainConfig with no save_every)
# ----------------
def test_a_run_without_save_every_still_checkpoints_by_time(tmp_path):
    def stop_at_4(model, batch):
        stop_at_4.calls += 1
        if stop_at_4.calls == 4:
            raise KeyboardInterrupt  # a kill: nothing is saved on the way out
        return lm_loss(model, batch)

    stop_at_4.calls = 0
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), stop_at_4, batches, config(tmp_path, save_every=0, save_seconds=1e-9))
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 3
    assert TrainConfig(steps=1).save_seconds == 300, (
        "by default a checkpoint at least every 5 minutes"
    )


# 5
# -------------------------------------------------------------------------------------------------
@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except OSError:
        return folder
    if sys.platform.startswith("linux"):
        return __import__("pathlib").Path("/sys/kernel")  # read-only even for root
    pytest.skip("no read-only folder here")


def test_an_unwritable_output_folder_is_refused_before_any_training(read_only, capsys):
    calls = []
    with pytest.raises(PermissionError, match=f"cannot write in the output folder {read_only}"):
        train(
            tiny_model(),
            lambda m, b: calls.append(1) or lm_loss(m, b),
            batches,
            config(read_only / "run"),
        )
    assert not calls, "nothing may train before the output folder is known to be writable"
    code, err = run_cli(["distill", "--stage", "ce", "--out", str(read_only / "run")], capsys)
    assert code == 2 and str(read_only) in err


# 6
# -------------------------------------------------------------------------------------------------
def holder(lock_file):
    """A second process holding the lock file (as another training run or evaluate would), until
    killed."""
    code = textwrap.dedent(f"""
        import fcntl, os, sys, time
        f = open({str(lock_file)!r}, "a+")
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0); f.truncate(); f.write(str(os.getpid())); f.flush()
        print("locked", flush=True)
        time.sleep(60)
    """)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_process_refuses_a_busy_output_folder_and_results_file(folders, tmp_path, capsys):
    child = holder(tmp_path / "run" / ".lock")
    try:
        with pytest.raises(
            RuntimeError,
            match=rf"output folder {tmp_path / 'run'} is in use by another process "
            rf"\(pid {child.pid}\)",
        ):
            train(tiny_model(), lm_loss, batches, config(tmp_path / "run"))
    finally:
        child.kill()
        child.wait()
    out = tmp_path / "r.json"
    child = holder(runs.file_lock_path(out))
    try:
        code, err = run_cli(
            [
                "evaluate",
                "--model",
                str(folders["a"]),
                "--text",
                str(folders["text"]),
                "--tasks",
                "ppl",
                "--profile",
                "smoke",
                "--context",
                "32",
                "--json",
                str(out),
            ],
            capsys,
        )
    finally:
        child.kill()
        child.wait()
    assert code == 1 and f"results file {out} is in use by another process" in err, err
    assert not out.exists()


# 7
# -------------------------------------------------------------------------------------------------
def test_a_context_beyond_the_position_table_is_refused_clearly(folders):
    model, tokenizer = load_model(str(folders["a"]), get_profile("smoke"))
    text = folders["text"].read_text()
    with pytest.raises(
        ValueError, match="context of 128 tokens exceeds the 64 positions.*--context 64 or less"
    ):
        evaluate.evaluate_model(
            model, tokenizer, {"t": text}, get_profile("smoke"), tasks=["ppl"], context=128
        )
    with pytest.raises(ValueError, match="l_max=128 exceeds the 64 learned positions"):
        convert(model, l_max=128)


# 8
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, option",
    [
        (
            ["distill", "--stage", "ce", "--model", "a", "--tokens", "-100", "--out", "{runs}"],
            "--tokens",
        ),
        (
            ["distill", "--stage", "ce", "--model", "a", "--tokens", "0", "--out", "{runs}"],
            "--tokens",
        ),
        (
            ["generate", "--model", "{a}", "--prompt", "Hello", "--max-new-tokens", "0"],
            "--max-new-tokens",
        ),
        (
            ["evaluate", "--model", "{a}", "--text", "{text}", "--length", "1", "--json", "{out}"],
            "--length",
        ),
        (
            ["evaluate", "--model", "{a}", "--text", "{text}", "--context", "0", "--json", "{out}"],
            "--context",
        ),
        (
            ["evaluate", "--model", "{a}", "--text", "{text}", "--stride", "0", "--json", "{out}"],
            "--stride",
        ),
    ],
)
def test_invalid_numbers_are_refused_before_any_work(
    tiny_teachers, folders, tmp_path, capsys, argv, option
):
    names = {
        "a": folders["a"],
        "text": folders["text"],
        "out": tmp_path / "r.json",
        "runs": tmp_path / "runs",
    }
    code, err = run_cli([a.format(**names) for a in argv], capsys)
    assert code == 2 and f"argument {option}" in err, err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "runs").exists()


def test_library_entry_points_refuse_nonsense_numbers(folders):
    with pytest.raises(TypeError, match="dtype torch.int64.*floating-point"):
        fftconv(torch.ones(1, 2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    model = GPT2LMHeadModel.from_pretrained(folders["a"]).eval()
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        generate(model, torch.tensor([[1, 2]]), max_new_tokens=0, mode="full")


# 9
# -------------------------------------------------------------------------------------------------
def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    def stop_at_5(model, batch):
        stop_at_5.calls += 1
        if stop_at_5.calls == 5:
            raise KeyboardInterrupt
        return lm_loss(model, batch)

    stop_at_5.calls = 0
    with pytest.raises(KeyboardInterrupt):
        train(
            tiny_model(), stop_at_5, batches, config(tmp_path, save_every=2)
        )  # checkpoints of steps 2 and 4
    newest = tmp_path / "checkpoint.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a crash or a full disk mid-copy
    result = train(tiny_model(), lm_loss, batches, config(tmp_path, save_every=2))
    assert result.finished and [r["step"] for r in result.records] == [1, 2, 3, 4, 5, 6]
    err = capsys.readouterr().err
    assert (
        f"{newest} is corrupt" in err
        and f"resuming from {tmp_path / 'checkpoint.prev.pt'} (step 2)" in err
    ), err


def test_a_truncated_log_names_its_file(tmp_path):
    train(tiny_model(), lm_loss, batches, config(tmp_path, steps=2))
    (tmp_path / "log.json").write_text('{"config": {"steps"')
    with pytest.raises(RuntimeError, match=f"{tmp_path / 'log.json'} is corrupt.*delete it"):
        train(tiny_model(), lm_loss, batches, config(tmp_path, steps=2))


def test_a_damaged_corpus_file_is_named_with_the_command_that_rebuilds_it(
    tmp_path, monkeypatch, capsys
):
    home = private_home(tmp_path / "home", copy_corpus=True)
    monkeypatch.setenv("HYENA_LITE_HOME", str(home))
    damaged = data.corpus_dir() / data.read_manifest()[0]["file"]
    damaged.write_text(damaged.read_text(encoding="utf-8").replace("e", "x", 1), encoding="utf-8")
    with pytest.raises(
        assets.AssetError,
        match=rf"{damaged} is damaged: sha256 .* `python -m hyena_lite data --force`",
    ):
        data.load_corpus("offline")

    def no_download(*args):
        raise AssertionError("`data` must name the damaged file, not download the sources again")

    monkeypatch.setattr(assets, "GROUPS", {k: no_download for k in assets.GROUPS})
    code, err = run_cli(["data"], capsys)
    assert (
        code == 1
        and damaged.relative_to(assets.assets_dir()).as_posix() in err
        and "--force" in err
    ), err


# 10
# ------------------------------------------------------------------------------------------------
def test_sigterm_stops_a_training_command_with_exit_143_after_saving(
    tiny_teachers, tmp_path, capsys
):
    run = tmp_path / "runs" / "stage-ce-teacher"
    killer = threading.Thread(
        target=lambda: (wait_for(run / "checkpoint.pt"), os.kill(os.getpid(), signal.SIGTERM))
    )
    killer.start()
    code, err = run_cli(
        [
            "distill",
            "--stage",
            "ce",
            "--model",
            "a",
            "--profile",
            "smoke",
            "--tokens",
            str(64 * 4 * 32),
            "--out",
            str(tmp_path / "runs"),
            "--no-progress",
        ],
        capsys,
    )
    killer.join()
    assert (
        code == 143
        and "stopped: stage-ce-teacher stopped by a signal after step" in err
        and "Traceback" not in err
    )
    step = torch.load(run / "checkpoint.pt", weights_only=False)["step"]
    assert f"after step {step} of 64" in err, "the checkpoint is of the step it stopped after"


def wait_for(path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_command_line_mistakes_print_one_line_and_no_traceback(
    folders, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    code, err = run_cli(["evaluate", "--model", "models/studnet", "--json", "r.json"], capsys)
    assert code == 2 and "models/studnet: no such folder" in err and "hub" not in err, err
    code, err = run_cli(
        ["generate", "--model", str(folders["a"]), "--prompt", "Hi", "--order", "0"], capsys
    )
    assert code == 2 and "argument --order: 0 is too small" in err and "filter" not in err, err
    code, err = run_cli(
        [
            "evaluate",
            "--model",
            "no-such-teacher",
            "--text",
            str(folders["text"]),
            "--json",
            "r.json",
        ],
        capsys,
    )
    assert (
        code == 1
        and err.count("\n") == 1
        and "unknown model 'no-such-teacher'" in err
        and "Traceback" not in err
    )
    with pytest.raises(ValueError, match="unknown model"):
        main(
            [
                "evaluate",
                "--model",
                "no-such-teacher",
                "--text",
                str(folders["text"]),
                "--json",
                "r.json",
                "--debug",
            ]
        )


def test_every_number_and_output_of_the_command_line_has_a_check():
    import argparse
    import importlib

    for name, (module, _) in COMMANDS.items():
        parser = argparse.ArgumentParser()
        importlib.import_module(module).cli_arguments(parser)
        unchecked = [
            a.option_strings[0]
            for a in parser._actions
            if a.option_strings
            and (a.type in (int, float) or a.dest in ("json", "out", "results"))
            and a.option_strings[0] not in CHECKS[name]
        ]
        assert not unchecked, f"{name}: add checks for {unchecked} to hyena_lite.cli.CHECKS"
