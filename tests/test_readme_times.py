"""The README's times are the measured ones: its smoke-profile sentence agrees with
hyena_lite/results/book_smoke.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_profile_row_matches_its_record() -> None:
    record = json.loads((ROOT / "hyena_lite" / "results" / "book_smoke.json").read_text())
    chapters = record["chapters"]
    longest = max(chapters, key=lambda c: c["seconds"])
    row = next(
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `smoke` |")
    )
    said = re.search(
        r"the (\d+) chapters took (\d+) minutes in all .* the longest (\d+) minutes? "
        r"\(chapter (\d+)\)",
        row,
    )
    assert said, f"the README's smoke row no longer states the measured times: {row}"
    count, total, most, number = map(int, said.groups())
    assert count == len(chapters) and all(c["ok"] for c in chapters)
    assert total == round(sum(c["seconds"] for c in chapters) / 60), "update the README"
    assert most == round(longest["seconds"] / 60) and number == int(longest["chapter"][:2])
