"""Exercises in the chapters: run a reader's answer through a checker and say what is wrong.

A checker is a function that takes the reader's answer and raises AssertionError with a message that
says what is wrong. `attempt` never raises, so an unfinished exercise does not stop a notebook; the
hidden solution is checked with `checker(solution)` directly, which does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def attempt(checker: Callable[[Any], None], answer: Any) -> bool:
    """Check a reader's answer; print "correct", "not attempted yet" or what is wrong; return
    success. Taught in chapter 2."""
    try:
        checker(answer)
    except NotImplementedError:
        print(
            "Not attempted yet: replace the `raise NotImplementedError` with your code, then run "
            "again."
        )
        return False
    except AssertionError as error:
        print(f"Not yet: {error}")
        return False
    print("Correct!")
    return True


def unfinished(*_args: Any, **_kwargs: Any) -> Any:
    """The body of an exercise stub: tells the checker that the reader has not answered yet.
    Taught in chapter 2."""
    raise NotImplementedError("replace this call with your answer")
