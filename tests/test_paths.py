"""The files the package ships (results, the assets' checksums) are found from the source tree, from
an installed copy and from a zip, and every results file a chapter reads is among them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from hyena_lite import assets, paths

ROOT = Path(__file__).resolve().parent.parent


def test_results_live_in_the_package_and_load_by_name():
    assert paths.results_dir() == ROOT / "hyena_lite" / "results"
    assert (paths.results_dir() / "benchmark_h200.json").is_file()
    assert isinstance(paths.load_result("benchmark_h200.json"), dict)
    assert isinstance(paths.load_result("smollm2_h200_curves.csv"), pd.DataFrame)
    assert (
        assets.CHECKSUMS == ROOT / "hyena_lite" / "assets_checksums.json"
        and assets.read_checksums()
    )


def test_a_missing_results_file_names_the_shipped_ones():
    with pytest.raises(
        FileNotFoundError, match=r"no results file 'nope.json'.*benchmark_h200.json"
    ):
        paths.load_result("nope.json")


def test_every_results_file_a_chapter_reads_ships():
    names = set()
    for chapter in sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb")):
        code = "\n".join(
            "".join(c["source"])
            for c in json.loads(chapter.read_text())["cells"]
            if c["cell_type"] == "code"
        )
        names |= set(re.findall(r"load_result\(\"([^\"]+)\"\)", code))
        names |= set(re.findall(r"results_dir\(\) / \"([^\"]+)\"", code))
    assert len(names) >= 8, names
    for name in sorted(names):
        assert paths.load_result(name) is not None


def test_a_zipped_package_finds_its_results_and_checksums(tmp_path):
    archive = tmp_path / "hyena_lite.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in (ROOT / "hyena_lite").rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                bundle.write(path, path.relative_to(ROOT).as_posix())
    probe = (
        "import json, hyena_lite.paths as p, hyena_lite.assets as a; "
        "print(json.dumps([p.__file__, str(p.results_dir()), "
        "sorted(x.name for x in p.results_dir().iterdir()), "
        "len(p.load_result('benchmark_h200.json')), len(a.read_checksums())]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(archive), "HYENA_LITE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    module, results, names, size, checksums = json.loads(done.stdout.strip().splitlines()[-1])
    assert module.startswith(str(archive)) and not results.startswith(str(archive))
    assert "benchmark_h200.json" in names and size > 0 and checksums > 100
