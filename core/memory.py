"""Giving freed heap memory back to the operating system.

The tokenizer's threads and the embedded engine allocate and free tens of MB
per batch through glibc's malloc, which keeps freed memory in its arenas: a
5,000-file first upload left the worker ~120 MB larger than it needed to be
(docs/indexing.md). `malloc_trim(0)` returns that memory; it costs ~3 ms a call
here, so the index step calls it once per batch. Elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
