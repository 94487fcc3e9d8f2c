"""The exercises' plumbing: attempt never raises, solutions come from hyena_lite.solutions."""

import pytest

from hyena_lite import exercises


def _fails(answer) -> None:
    assert answer == 2, f"expected 2, got {answer}"


def test_attempt_reports_without_raising(capsys) -> None:
    assert exercises.attempt(_fails, 2) is True
    assert exercises.attempt(_fails, 3) is False
    assert exercises.attempt(lambda f: f(), exercises.unfinished) is False
    out = capsys.readouterr().out
    assert "Correct!" in out and "expected 2, got 3" in out and "unfinished()" in out


def test_solution_names_what_exists_when_asked_for_what_does_not() -> None:
    with pytest.raises(KeyError, match="chapter 99 has no solutions module"):
        exercises.solution(99, "anything")
