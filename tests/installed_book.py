"""The book from an installed wheel, outside the checkout, as a reader on Colab has it.

Builds the wheel from the tracked files, installs it (without dependencies: they come from the
environment running this script, through a .pth line, so that nothing is downloaded) into a fresh
virtual environment in a temporary folder, builds the offline assets there with
`python -m hyena_lite data` into a temporary HYENA_LITE_HOME (reusing the already downloaded source
archives), checks that the installed package carries its results files, and executes every chapter
in the smoke profile from a temporary folder (scripts/run_book.py).

    python tests/installed_book.py [--keep] [--chapters 01 09]     # make installed
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command, echo it, and stop with its output when it fails."""
    print("$", " ".join(map(str, cmd)), flush=True)
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(
            f"FAILED ({done.returncode}): {' '.join(map(str, cmd))}\n{done.stdout[-4000:]}\n"
            f"{done.stderr[-4000:]}"
        )
    return done.stdout


def tracked_copy(target: Path) -> Path:
    """The checkout's tracked files (and untracked ones git does not ignore), copied as a fresh
    clone has them."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], ROOT)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def build_wheel(source: Path, dist: Path) -> Path:
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            dist,
            source,
        ],
        source,
    )
    wheels = sorted(dist.glob("hyena_lite-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one hyena_lite wheel in {dist}, found {wheels}")
    return wheels[0]


def fresh_venv(folder: Path, wheel: Path) -> Path:
    """A venv with the wheel installed and this environment's packages visible after its
    own (a .pth line)."""
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    purelib = Path(
        run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], folder
        ).strip()
    )
    # The parent's site-packages as a plain path: its .pth files (an editable hyena_lite among them)
    # are not read.
    (purelib / "parent_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            wheel,
        ],
        folder,
    )
    return python


def cached_sources(home: Path) -> None:
    """Copy the downloaded source archives (PyPI sdist, Debian files) so that the build
    downloads nothing."""
    sys.path.insert(0, str(ROOT))
    from hyena_lite.paths import assets_dir

    sys.path.pop(0)
    cache, target = assets_dir() / "cache", home / "data" / "build" / "cache"
    for archive in [*cache.glob("*.tar.gz"), *cache.glob("debian/*.deb")]:
        (target / archive.relative_to(cache)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(archive, target / archive.relative_to(cache))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (it is printed)"
    )
    parser.add_argument(
        "--chapters", nargs="*", default=None, help="chapter prefixes (default: every chapter)"
    )
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="hyena-lite-installed-"))
    print(f"working in {tmp}", flush=True)
    try:
        wheel = build_wheel(tracked_copy(tmp / "source"), tmp / "dist")
        python = fresh_venv(tmp / "venv", wheel)
        home, work = tmp / "home", tmp / "run"
        work.mkdir()
        cached_sources(home)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "HYENA_BOOK_PROFILE", "VIRTUAL_ENV")
        }
        env |= {"HYENA_LITE_HOME": str(home), "PYTHONNOUSERSITE": "1"}

        built = run([python, "-m", "hyena_lite", "data"], work, env)
        print(
            next(
                (line for line in built.splitlines() if line.startswith("offline assets in")), built
            )
        )
        if "downloaded: nothing" not in built:
            raise SystemExit(f"FAILED: building the assets downloaded something:\n{built}")
        probe = (
            "import json, sys, hyena_lite, hyena_lite.paths as p; "
            "print(json.dumps({'package': hyena_lite.__file__, 'results': str(p.results_dir()), "
            "'path': sys.path, 'cwd': __import__('os').getcwd()}))"
        )
        where = json.loads(run([python, "-c", probe], work, env))
        print(f"installed package {where['package']}; results_dir() {where['results']}")
        problems = []
        if not where["package"].startswith(str(tmp / "venv")):
            problems.append(
                f"hyena_lite was imported from {where['package']}, not from the fresh environment"
            )
        if not Path(where["results"], "benchmark_h200.json").is_file():
            problems.append(f"results_dir() = {where['results']} holds no benchmark_h200.json")
        if (
            any(Path(where["cwd"], p).resolve() == ROOT for p in where["path"])  # "" is its cwd
            or Path(where["cwd"]).resolve() == ROOT
        ):
            problems.append("the checkout is on sys.path or the working directory")
        if problems:
            raise SystemExit("FAILED: " + "; ".join(problems))

        out = work / "book_smoke.json"
        chapters = ["--chapters", *args.chapters] if args.chapters else []
        book = subprocess.run(
            [
                python,
                ROOT / "scripts" / "run_book.py",
                "--book",
                tmp / "source" / "book",
                "--workdir",
                work,
                "--profile",
                "smoke",
                "--json",
                out,
                "--timeout",
                "900",
                *chapters,
            ],
            cwd=work,
            env=env,
        )
        record = json.loads(out.read_text()) if out.is_file() else {"chapters": []}
        for chapter in record["chapters"]:
            outcome = "ok" if chapter["ok"] else "FAILED"
            print(
                f"  {chapter['chapter']:<32} {outcome:<7} {chapter['seconds']:>7} s"
                + ("" if chapter["ok"] else f"  {chapter['error']}")
            )
        if book.returncode or not record["chapters"]:
            raise SystemExit("FAILED: not every chapter ran from the installed wheel")
        print(f"every chapter ran from the installed wheel ({len(record['chapters'])} chapters)")
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
