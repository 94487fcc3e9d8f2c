"""100 random bad command lines (seeded, tests/bad_invocations.py): each exits non-zero with a
one-line message and prints no traceback."""

from __future__ import annotations

import bad_invocations


def test_a_hundred_bad_command_lines_are_refused_clearly():
    outcomes = bad_invocations.check(seed=0, count=100)
    failed = [
        f"{' '.join(o.argv)} -> exit {o.code}, {o.problem}: {o.output[-300:]}"
        for o in outcomes
        if o.problem
    ]
    assert not failed, f"{len(failed)} of {len(outcomes)}:\n" + "\n".join(failed[:10])
    assert len({" ".join(o.argv) for o in outcomes}) > 60, "the draws must differ"
    assert len({o.argv[0] for o in outcomes}) >= 6, "every subcommand (and unknown ones) is tried"
