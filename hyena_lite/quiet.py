"""Quiet sections: tqdm bars and a library's log warnings turned off while inside (the commands'
`--no-progress`, and lm-evaluation-harness inside a chapter, whose stderr a book build rejects)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_progress_bars(force: bool = False) -> Iterator[None]:
    """Every tqdm bar disabled while inside (the library's, and those of transformers and
    datasets, which build on tqdm); a bar created with an explicit `disable=` keeps its own unless
    `force` (lm-evaluation-harness passes `disable=` itself)."""
    from tqdm import std

    init = std.tqdm.__dict__["__init__"]
    if force:
        call = std.tqdm.__init__  # callable whatever init is (a function or a partialmethod)

        def disabled(self, *args, **kwargs) -> None:
            kwargs["disable"] = True
            call(self, *args, **kwargs)

        std.tqdm.__init__ = disabled
    else:
        std.tqdm.__init__ = functools.partialmethod(init, disable=True)
    try:
        yield
    finally:
        std.tqdm.__init__ = init


@contextmanager
def errors_only(logger_name: str) -> Iterator[None]:
    """The named logger (and its children) passes only errors while inside."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
