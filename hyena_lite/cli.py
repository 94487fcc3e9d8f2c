"""The command line, `hyena-lite SUBCOMMAND ...` or `python -m hyena_lite SUBCOMMAND ...`.

Each subcommand lives in the module that does its work; that module defines `cli_arguments(parser)`
and `cli_main(args) -> int | None`, and is imported only when used. Every value is checked before
any work (CHECKS, hyena_lite.validation); every output file and folder is locked while the command
runs; a mistake prints one line, no traceback (`--debug` shows it); SIGINT and SIGTERM exit with 130
and 143, after a training run saved its checkpoint.

The same conventions in every subcommand: `--model` names the model it works on, `--json FILE`
writes its results (`--json -`: the JSON alone on stdout, every other line on stderr), `--help`
shows the defaults, `--no-progress` hides the progress bars (on stderr)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack, redirect_stdout

from hyena_lite import validation as v
from hyena_lite.quiet import no_progress_bars

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
    "lm-eval": (
        "hyena_lite.experiments.lm_eval",
        "lm-evaluation-harness on the offline last-word task (needs hyena_lite[eval])",
    ),
}


def _tasks(text: str) -> str:
    from hyena_lite.evaluate import TASKS

    return v.names_from(TASKS)(text)


def _lm_eval_tasks(text: str) -> str:
    from hyena_lite.lm_eval_task import TASK, TASK_GEN

    return v.names_from((TASK, TASK_GEN))(text)


def _profile(text: str) -> str:
    from hyena_lite.profiles import PROFILES

    return v.one_of(sorted(PROFILES), "profile")(text)


# option -> its check, per subcommand; applied to the options each module declares
CHECKS: dict[str, dict[str, Callable[[str], object]]] = {
    "data": {"--json": v.output_file},
    "teacher": {"--profile": _profile, "--model": v.model_reference, "--json": v.output_file},
    "benchmark": {
        "--lengths": v.positive_int,
        "--device": v.device,
        "--batch": v.positive_int,
        "--d-model": v.positive_int,
        "--heads": v.positive_int,
        "--layers": v.positive_int,
        "--vocab": v.int_at_least(2),
        "--new-tokens": v.positive_int,
        "--warmup": v.nonnegative_int,
        "--repeats": v.positive_int,
        "--kernels-at": v.positive_int,
        "--json": v.output_file,
    },
    "distill": {
        "--profile": _profile,
        "--model": v.model_reference,
        "--tokens": v.positive_int,
        "--hyena-layers": v.int_list(0),
        "--out": v.output_dir,
        "--json": v.output_file,
        "--grad-accum": v.positive_int,
        "--recall-fraction": v.share,
    },
    "evaluate": {
        "--model": v.model_reference,
        "--text": v.existing_file,
        "--split": v.one_of(("train", "validation", "test"), "split"),
        "--tasks": _tasks,
        "--teacher": v.model_reference,
        "--context": v.int_at_least(2),
        "--stride": v.positive_int,
        "--length": v.int_at_least(2),
        "--batch-size": v.positive_int,
        "--eval-tokens": v.int_at_least(0),
        "--profile": _profile,
        "--json": v.output_file,
    },
    "generate": {
        "--model": v.model_folder,
        "--order": v.positive_int,
        "--max-new-tokens": v.positive_int,
        "--temperature": v.float_at_least(0.0),
        "--top-k": v.positive_int,
        "--seed": v.nonnegative_int,
        "--device": v.device,
        "--json": v.output_file,
        "--contexts": v.int_list(1),
        "--batches": v.int_list(1),
        "--layers": v.positive_int,
        "--width": v.positive_int,
        "--orders": v.int_list(1),
        "--context": v.int_at_least(2),
        "--train-steps": v.positive_int,
    },
    "lm-eval": {
        "--model": v.model_reference,
        "--tasks": _lm_eval_tasks,
        "--limit": v.nonnegative_int,
        "--batch-size": v.positive_int,
        "--profile": _profile,
        "--json": v.output_file,
    },
}
# errors that mean "the user asked for something that cannot be done": shown as their message alone
USER_ERRORS = (ValueError, TypeError, LookupError, OSError, RuntimeError, FloatingPointError)


# old spellings still accepted, with a warning on stderr: subcommand -> {old: new}
DEPRECATED: dict[str, dict[str, str]] = {
    "teacher": {"--name": "--model"},
    "distill": {"--teacher": "--model", "--results": "--json"},
}
# `generate --benchmark FILE` and `--quality FILE` (the commands in older results files) now read
# `--benchmark --json FILE`
DEPRECATED_FILE_FLAGS = {"generate": ("--benchmark", "--quality")}


def _prog() -> str:
    """How this process was started: `hyena-lite` (the console script) or `python -m hyena_lite`."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name.startswith("hyena-lite") else "python -m hyena_lite"


def _version() -> str:
    from hyena_lite import __version__

    return f"hyena_lite {__version__}"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows each option's default, unless it is None or False or the help names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if any(action.default is d for d in (None, False, argparse.SUPPRESS)) or "default" in text:
            return text
        return super()._get_help_string(action)


def _top_parser() -> argparse.ArgumentParser:
    prog = _prog()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Distil transformers into Hyena long-convolution models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands:\n"
        + "\n".join(f"  {n:<10} {h}" for n, (_, h) in COMMANDS.items())
        + f"\n\n`{prog} SUBCOMMAND --help` for the options of one.",
    )
    parser.add_argument(
        "command", choices=sorted(COMMANDS), metavar="SUBCOMMAND", help="what to do"
    )
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the Python traceback"
    )
    parser.add_argument("--version", action="version", version=_version())
    return parser


def _undeprecated(name: str, argv: list[str]) -> list[str]:
    """argv with the old spellings of `name`'s options replaced by the new ones (one warning line
    on stderr per old spelling)."""
    renames, file_flags, out = DEPRECATED.get(name, {}), DEPRECATED_FILE_FLAGS.get(name, ()), []
    for i, arg in enumerate(argv):
        option, equals, value = arg.partition("=")
        if option in renames:
            print(f"warning: {option} is deprecated; use {renames[option]}", file=sys.stderr)
            arg = renames[option] + equals + value
        elif option in file_flags and (
            equals or (i + 1 < len(argv) and not argv[i + 1].startswith("-"))
        ):
            print(
                f"warning: {option} FILE is deprecated; use {option} --json FILE",
                file=sys.stderr,
            )
            out.append(option)
            arg = "--json" + equals + value
        out.append(arg)
    return out


class Terminated(BaseException):
    """SIGTERM outside a training loop: unwinds like KeyboardInterrupt, so that files and locks are
    closed."""


def _on_sigterm(signum, _frame):
    raise Terminated(signum)


def _one_line(error: BaseException) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; return the process exit code (1 on an error, 130 / 143 after SIGINT /
    SIGTERM).

    A mistake prints one line on stderr; with --debug (anywhere on the line) the traceback too."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted (SIGINT)", file=sys.stderr)
        return 130
    except Terminated:
        if debug:
            raise
        print("terminated (SIGTERM)", file=sys.stderr)
        return 143
    except Exception as error:  # the one place that turns errors into messages
        from hyena_lite.training import TrainingStopped

        if debug:
            raise
        if isinstance(error, TrainingStopped):
            print(f"stopped: {_one_line(error)}", file=sys.stderr)
            return 128 + error.signum
        kind = "" if isinstance(error, USER_ERRORS) else f"{type(error).__name__}: "
        print(f"error: {kind}{_one_line(error)} (--debug shows where)", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _dispatch(argv: list[str]) -> int:
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    if argv[0] == "--version":
        print(_version())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.error(f"unknown subcommand {name!r}; choose one of {', '.join(COMMANDS)}")
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"{_prog()} {name}", description=help_text, formatter_class=HelpFormatter
    )
    module.cli_arguments(parser)
    if "--no-progress" not in parser._option_string_actions:
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    v.apply_checks(parser, CHECKS[name])
    args = parser.parse_args(_undeprecated(name, rest))
    to_stdout = [value for value in vars(args).values() if isinstance(value, v.Stdout)]
    with ExitStack() as stack:
        if (
            os.environ.get("RANK", "0") == "0"
        ):  # in a multi-process run, the first process holds the locks
            from hyena_lite import runs

            for value in vars(args).values():
                if isinstance(value, v.OutputFile):
                    stack.enter_context(runs.file_lock(value))
                elif isinstance(value, v.OutputDir):
                    stack.enter_context(runs.folder_lock(value))
        if args.no_progress:
            stack.enter_context(no_progress_bars())
        stdout = sys.stdout
        if to_stdout:  # the JSON alone on stdout: everything else the command prints on stderr
            stack.enter_context(redirect_stdout(sys.stderr))
        code = int(module.cli_main(args) or 0)
    for target in to_stdout:
        if target.value is not None:
            print(json.dumps(target.value, indent=1), file=stdout)
    return code
