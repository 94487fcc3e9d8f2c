"""Exercises in the chapters: run a reader's answer through a checker and say what is wrong.

A checker is a function that takes the reader's answer and raises AssertionError with a message that
says what is wrong. `attempt` never raises, so an unfinished exercise does not stop a notebook.

Solutions live out of the reader's sight, in `hyena_lite.solutions.chNN` (one module per chapter),
never in a notebook: a chapter checks its own solutions with `checker(solution(N, name))`, which
raises (so CI proves every solution passes its checker), and a reader who wants one calls
`show_solution(N, name)`. A solution is a function (its source is shown) or, for a question whose
answer is prose, a string (the model answer).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any


def attempt(checker: Callable[[Any], None], answer: Any) -> bool:
    """Check a reader's answer; print "correct", "not attempted yet" or what is wrong; return
    success. Taught in chapter 2."""
    try:
        checker(answer)
    except NotImplementedError:
        print(
            "Not attempted yet: replace the `unfinished()` call with your answer, then run again."
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


def solution(chapter: int, name: str) -> Any:
    """The solution `name` of chapter `chapter` (a function or a model answer), from
    hyena_lite.solutions. Taught in chapter 2."""
    try:
        module = importlib.import_module(f"hyena_lite.solutions.ch{chapter:02d}")
    except ModuleNotFoundError:
        raise KeyError(
            f"chapter {chapter} has no solutions module (hyena_lite/solutions/)"
        ) from None
    if not hasattr(module, name):
        names = sorted(n for n in vars(module) if not n.startswith("_") and n != "annotations")
        raise KeyError(f"chapter {chapter} has no solution {name!r}; it has {', '.join(names)}")
    return getattr(module, name)


def show_solution(chapter: int, name: str) -> None:
    """Print a solution: a function's source, or a prose question's model answer. Try the exercise
    first. Taught in chapter 2."""
    answer = solution(chapter, name)
    print(answer if isinstance(answer, str) else inspect.getsource(answer))
