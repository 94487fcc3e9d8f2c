"""hyena_lite.compile_cache: artefacts compiled in one process, saved to a file, are loaded by a
fresh process with an empty inductor cache, which then compiles nothing; bad files are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hyena_lite.compile_cache import load_compiled

CHILD = """
import json, sys, torch
from torch._dynamo.utils import counters
from hyena_lite.compile_cache import load_compiled, save_compiled
path, mode = sys.argv[1], sys.argv[2]
loaded = load_compiled(path) if mode == "load" else None
f = torch.compile(lambda x: (x.sin() * 2).cos().sum())
f(torch.randn(64))
size = save_compiled(path) if mode == "save" else None
inductor = counters["inductor"]
print(json.dumps({"loaded": loaded, "size": size, "hits": inductor["fxgraph_cache_hit"],
                  "misses": inductor["fxgraph_cache_miss"]}))
"""


def _child(tmp_path, cache: str, mode: str) -> dict:
    """One fresh process with its own empty inductor cache folder."""
    env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / cache)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "compiled.gz"), mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_fresh_process_loads_what_another_compiled(tmp_path):
    first = _child(tmp_path, "first", "save")
    assert first["misses"] == 1 and first["hits"] == 0 and first["size"] > 0
    second = _child(tmp_path, "second", "load")
    assert second["loaded"]["inductor"] == 1
    assert second["hits"] == 1 and second["misses"] == 0


def test_missing_and_bad_files(tmp_path):
    assert load_compiled(tmp_path / "none.gz") is None
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="not a file written by save_compiled"):
        load_compiled(bad)
