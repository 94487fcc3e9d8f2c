"""The command line, `python -m hyena_lite SUBCOMMAND ...`.

Each subcommand lives in the module that does its work; that module defines `cli_arguments(parser)`
and `cli_main(args) -> int | None`, and is imported only when used.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": (
        "hyena_lite.assets",
        "build the offline assets (tokenizer, corpus) and print what was built",
    ),
    "teacher": (
        "hyena_lite.teachers",
        "load (or pre-train) a teacher; its size, training and perplexity per domain",
    ),
    "benchmark": (
        "hyena_lite.experiments.bench",
        "time and memory of attention vs Hyena: operator, model, generation",
    ),
    "distill": (
        "hyena_lite.experiments.distill",
        "distil a teacher into a Hyena student: progressive, kd, ce/scratch, recipes",
    ),
    "evaluate": (
        "hyena_lite.experiments.evaluate",
        "perplexity, bits per byte, teacher agreement, cloze, recall, length",
    ),
    "generate": (
        "hyena_lite.experiments.generation",
        "continue a prompt: full, cached or recurrent (state-space) decoding",
    ),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hyena_lite",
        description="Distil transformers into Hyena long-convolution models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands:\n"
        + "\n".join(f"  {n:<10} {h}" for n, (_, h) in COMMANDS.items())
        + "\n\n`python -m hyena_lite SUBCOMMAND --help` for the options of one.",
    )
    parser.add_argument(
        "command", choices=sorted(COMMANDS), metavar="SUBCOMMAND", help="what to do"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; return the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.error(f"unknown subcommand {name!r}; choose one of {', '.join(COMMANDS)}")
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m hyena_lite {name}", description=help_text)
    module.cli_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.cli_main(args) or 0)
