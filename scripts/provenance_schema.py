"""Rewrite the provenance keys of committed results files to the one schema of
`hyena_lite.provenance` (issue 18); every other value is left as it is.

`git_commit` becomes `commit` (also in the SmolLM2 history's rows; an "unknown..." commit becomes
null); the benchmark's device dictionary, once under `hardware`, moves to `device` and `hardware`
names its GPU; the evaluation's and the teacher's `device` becomes `hardware`; `torch` and
`transformers` go into `versions`.
Run once: `python scripts/provenance_schema.py results/*.json`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def migrate(record: dict, nested: bool = False) -> dict:
    """The provenance record with the one schema's keys, in the same order (`nested`: the
    evaluation's `meta` and the teacher's `environment`, which also name device and versions)."""
    out = {}
    for key, value in record.items():
        if key == "git_commit":
            out["commit"] = None if str(value).startswith("unknown") else value
        elif key == "hardware" and isinstance(value, dict):
            out["hardware"] = value.get("gpu") or value.get("cpu")
            out["device"] = value
        elif key == "device" and nested:
            out["hardware"] = value
        elif key in ("torch", "transformers") and (nested or "versions" not in record):
            out.setdefault("versions", {})[key] = value
        else:
            out[key] = value
    return out


def main(paths: list[str]) -> int:
    for path in map(Path, paths):
        data = json.loads(path.read_text())
        new = migrate(data)
        for key in ("meta", "environment"):
            if isinstance(new.get(key), dict):
                new[key] = migrate(new[key], nested=True)
        if isinstance(new.get("history"), list):  # the SmolLM2 runs' rows, one per student
            new["history"] = [migrate(row) for row in new["history"]]
        if new != data:
            text = path.read_text()
            path.write_text(json.dumps(new, indent=1) + ("\n" if text.endswith("\n") else ""))
            print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
