"""Random bad command lines, seeded: each must exit non-zero with a one-line message and no
traceback.

    python tests/bad_invocations.py --seed 0 --count 100  # each command line and its message

Each invocation is a valid command line of one subcommand with one mistake put in (a number out of
range or not a number, an unknown choice, a missing or unwritable path, an unknown or incomplete
option, a missing or conflicting required option, an unknown subcommand). Every mistake is caught
before any work, so the invocations run in this process, through `hyena_lite.cli.main`, in about a
second in all."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

from hyena_lite.cli import main


@dataclass
class Outcome:
    argv: list[str]
    code: int
    output: str

    @property
    def message(self) -> str:
        lines = [line for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    @property
    def problem(self) -> str | None:
        """What is wrong with how the command line answered (None: a clear refusal)."""
        if "Traceback" in self.output:
            return "printed a traceback"
        if self.code == 0:
            return "exited 0"
        if "error" not in self.message:
            return f"no error message (last line {self.message!r})"
        return None


def places(root: Path) -> dict[str, str]:
    """Files and folders the invocations point at: a model folder (config.json only: nothing is
    loaded), a text file, a folder without a model, a regular file, and paths that cannot be
    written."""
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (root / "text.txt").write_text("Some text to score.\n" * 10)
    (root / "empty-folder").mkdir()
    (root / "a-file").write_text("not a folder")
    return {
        "model": str(model),
        "text": str(root / "text.txt"),
        "folder": str(root / "empty-folder"),
        "file": str(root / "a-file"),
        "out": str(root / "out" / "r.json"),
        "outdir": str(root / "runs"),
        "under_file": str(root / "a-file" / "r.json"),
        "missing": str(root / "no" / "such" / "thing"),
    }


def valid_commands(p: dict[str, str]) -> dict[str, list[str]]:
    """One command line per subcommand that would be accepted (and would do work)."""
    return {
        "data": ["data"],
        "teacher": ["teacher", "--profile", "smoke", "--json", p["out"]],
        "benchmark": [
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
            "--repeats",
            "1",
            "--json",
            p["out"],
        ],
        "distill": [
            "distill",
            "--stage",
            "ce",
            "--profile",
            "smoke",
            "--tokens",
            "256",
            "--out",
            p["outdir"],
        ],
        "evaluate": [
            "evaluate",
            "--model",
            p["model"],
            "--text",
            p["text"],
            "--context",
            "32",
            "--stride",
            "16",
            "--batch-size",
            "2",
            "--json",
            p["out"],
        ],
        "generate": [
            "generate",
            "--model",
            p["model"],
            "--prompt",
            "Hi",
            "--order",
            "4",
            "--max-new-tokens",
            "4",
            "--temperature",
            "0.5",
            "--top-k",
            "5",
        ],
        "lm-eval": [
            "lm-eval",
            "--model",
            p["model"],
            "--limit",
            "3",
            "--batch-size",
            "2",
            "--json",
            p["out"],
        ],
    }


# option -> values that must be refused, per subcommand
def mistakes(p: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    below_one = ["0", "-1", "-100", "abc", "1.5", "", "1e3"]
    below_two = ["1", "0", "-3", "ten"]
    below_zero = ["-1", "-7", "x", "2.5"]
    outputs = [p["folder"], p["under_file"]]
    return {
        "data": {"--json": outputs},
        "teacher": {
            "--profile": ["huge", "SMOKEY", ""],
            "--json": outputs,
            "--model": [p["missing"], p["folder"]],
        },
        "benchmark": {
            "--lengths": below_one,
            "--batch": below_one,
            "--d-model": below_one,
            "--heads": below_one,
            "--layers": below_one,
            "--vocab": below_two,
            "--new-tokens": below_one,
            "--repeats": below_one,
            "--warmup": below_zero,
            "--kernels-at": below_one,
            "--json": outputs,
            "--what": ["everything"],
            "--dtype": ["int8"],
            "--device": ["tpu", "cuda:x"],
        },
        "distill": {
            "--tokens": below_one,
            "--grad-accum": below_one,
            "--hyena-layers": ["a,b", "", "-1", "0,,x"],
            "--recall-fraction": ["-0.1", "1", "x"],
            "--out": [p["file"], p["under_file"]],
            "--json": outputs,
            "--profile": ["huge"],
            "--stage": ["everything"],
            "--init": ["zeros"],
            "--compile": ["fast"],
            "--model": [p["missing"], p["folder"]],
        },
        "evaluate": {
            "--model": [p["missing"], p["folder"], "./nowhere", "=", f"label={p['missing']}"],
            "--text": [p["missing"], p["folder"]],
            "--context": below_two,
            "--stride": below_one,
            "--length": below_two,
            "--batch-size": below_one,
            "--json": outputs,
            "--split": ["dev"],
            "--tasks": ["vibes", "ppl,vibes", ","],
            "--profile": ["huge"],
            "--teacher": [p["missing"]],
        },
        "generate": {
            "--model": [p["missing"], p["folder"]],
            "--order": below_one,
            "--max-new-tokens": below_one,
            "--temperature": ["-0.5", "nan", "inf", "hot"],
            "--top-k": below_one,
            "--seed": below_zero,
            "--mode": ["teleport"],
            "--json": outputs,
            "--contexts": ["0,1", "x", ""],
            "--batches": ["-1"],
            "--orders": ["x,2"],
            "--context": below_two,
            "--train-steps": below_one,
            "--layers": below_one,
            "--width": below_one,
            "--device": ["tpu"],
        },
        "lm-eval": {
            "--model": [p["missing"], p["folder"], "="],
            "--tasks": ["lambada", "hyena_lastword,x", ","],
            "--limit": below_zero,
            "--batch-size": below_one,
            "--profile": ["huge"],
            "--json": outputs,
        },
    }


def _with(argv: list[str], option: str, value: str) -> list[str]:
    """argv with option set to value (replaced where it is, else appended)."""
    if option in argv:
        i = argv.index(option)
        return argv[: i + 1] + [value] + argv[i + 2 :]
    return argv + [option, value]


def invocations(seed: int, count: int, p: dict[str, str]) -> list[list[str]]:
    """`count` bad command lines drawn with `seed`."""
    rng = random.Random(seed)
    valid, bad = valid_commands(p), mistakes(p)
    structural = {
        "unknown option": lambda argv: argv + ["--frobnicate"],
        "missing value": lambda argv: (
            argv + [rng.choice([o for o in bad[argv[0]]] or ["--frobnicate"])]
        ),
        "stray argument": lambda argv: argv + ["surplus"],
        "unknown subcommand": lambda argv: (
            [rng.choice(["fly", "train", "distil", "evaluat", "-x"])] + argv[1:]
        ),
    }
    required = {
        "evaluate": [["--model"], ["--json"]],
        "distill": [["--stage"]],
        "lm-eval": [["--model"]],
    }
    out = []
    while len(out) < count:
        name = rng.choice(sorted(valid))
        argv = list(valid[name])
        kind = rng.random()
        if kind < 0.7 and bad[name]:
            option = rng.choice(sorted(bad[name]))
            argv = _with(argv, option, rng.choice(bad[name][option]))
        elif kind < 0.8 and name in required:
            for option in rng.choice(required[name]):
                i = argv.index(option)
                argv = argv[:i] + argv[i + 2 :]
        elif kind < 0.85 and name == "distill":
            argv = argv + ["--recipe", "best"]  # with --stage: mutually exclusive
        else:
            argv = rng.choice(list(structural.values()))(argv)
        out.append(argv)
    return out


def run(argv: list[str]) -> Outcome:
    """Run one command line in this process; an exception that escapes main is printed as a
    traceback."""
    stream = io.StringIO()
    with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            if not isinstance(stop.code, int) and stop.code is not None:
                print(stop.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001  what a user would see: the traceback
            traceback.print_exc()
            code = 1
    return Outcome(argv, code, stream.getvalue())


def check(seed: int = 0, count: int = 100) -> list[Outcome]:
    """Run `count` bad invocations drawn with `seed`; return every outcome."""
    with tempfile.TemporaryDirectory() as root:
        p = places(Path(root))
        outcomes = [run(argv) for argv in invocations(seed, count, p)]
        assert not Path(p["out"]).exists() and not Path(p["outdir"]).exists(), (
            "a bad invocation wrote output"
        )
    return outcomes


def _main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    outcomes = check(args.seed, args.count)
    for i, o in enumerate(outcomes):
        print(
            f"{i:3d} exit {o.code}  {' '.join(o.argv)[:100]}\n          {o.problem or 'ok'}: "
            f"{o.message[:160]}"
        )
    failed = [o for o in outcomes if o.problem]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} refused clearly")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main())
