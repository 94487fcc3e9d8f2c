"""hyena_lite.cpu_memory tunes glibc's malloc once, and does nothing where there is no glibc."""

from __future__ import annotations

import sys

import pytest

from hyena_lite import cpu_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is Linux's")
def test_glibc_malloc_is_tuned_once_per_process():
    assert cpu_memory.keep_freed_memory() is True
    assert cpu_memory.keep_freed_memory() is True  # the second call changes nothing


def test_without_a_c_library_nothing_is_tuned(monkeypatch):
    monkeypatch.setattr(cpu_memory, "_done", False)
    monkeypatch.setattr(cpu_memory.ctypes.util, "find_library", lambda name: None)
    assert cpu_memory.keep_freed_memory() is False
