"""The command line lists its subcommands and rejects unknown ones."""

import json
import subprocess
import sys

import pytest

from hyena_lite.cli import COMMANDS, main


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_subcommand_is_an_error(capsys):
    with pytest.raises(SystemExit):
        main(["fly"])
    assert "unknown subcommand 'fly'" in capsys.readouterr().err


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "hyena_lite", "--help"], capture_output=True, text=True, check=True
    )
    assert "data" in done.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_its_options(name, capsys):
    """Each subcommand's module is found and defines its options: `--help` prints them."""
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    assert f"python -m hyena_lite {name}" in capsys.readouterr().out


def test_version(capsys):
    from hyena_lite import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hyena_lite {__version__}"


def test_console_script_name_in_help(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/hyena-lite"])
    assert main(["--help"]) == 0
    assert "hyena-lite SUBCOMMAND --help" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_shows_defaults_and_has_no_progress(name, capsys):
    with pytest.raises(SystemExit):
        main([name, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--no-progress" in out
    if name in ("benchmark", "generate", "evaluate", "lm-eval"):
        assert "(default: " in out


def test_one_spelling_per_role():
    """--model names the model a subcommand works on and --json its results file, everywhere."""
    import argparse
    import importlib

    for name, (module, _) in COMMANDS.items():
        parser = argparse.ArgumentParser()
        importlib.import_module(module).cli_arguments(parser)
        options = set(parser._option_string_actions)
        assert not options & {"--results", "--name", "--out-json", "--output"}, name
        assert "--json" in options, name
        if name in ("teacher", "distill", "evaluate", "generate", "lm-eval"):
            assert "--model" in options, name


def test_old_spellings_are_rewritten_with_a_warning(capsys):
    from hyena_lite.cli import _undeprecated

    assert _undeprecated("distill", ["--teacher", "a", "--results=r.json"]) == [
        "--model",
        "a",
        "--json=r.json",
    ]
    assert "--results is deprecated; use --json" in capsys.readouterr().err
    assert _undeprecated("generate", ["--benchmark", "g.json", "--order", "4"]) == [
        "--benchmark",
        "--json",
        "g.json",
        "--order",
        "4",
    ]
    assert _undeprecated("generate", ["--quality", "--json", "q.json"]) == [
        "--quality",
        "--json",
        "q.json",
    ]
    assert _undeprecated("teacher", ["--name", "mini-gpt2"]) == ["--model", "mini-gpt2"]


BENCH = ["benchmark", "--what", "operator", "--lengths", "16", "--device", "cpu"]
BENCH += ["--d-model", "16", "--heads", "2", "--repeats", "1", "--warmup", "0"]


def test_json_to_stdout_alone(capsys):
    """`--json -`: stdout holds the JSON and nothing else; the table goes to stderr."""
    assert main([*BENCH, "--json", "-"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert results["operator"]["rows"][0]["L"] == 16
    assert "attn_ms" in captured.err and "wrote" in captured.err


def test_no_progress_hides_the_bars(tmp_path, capsys):
    assert main([*BENCH, "--json", str(tmp_path / "b.json")]) == 0
    assert "operator:" in capsys.readouterr().err  # the bar, by default
    assert main([*BENCH, "--json", str(tmp_path / "b.json"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "attn_ms" in captured.out
