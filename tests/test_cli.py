"""The command line lists its subcommands and rejects unknown ones."""

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
