"""Giving freed heap memory back to the operating system.

The tokenizer's threads and the embedded engine allocate and free tens of MB
per batch through glibc's malloc, which keeps freed memory in its arenas:
embedding 63,535 real chunks in one process left it ~120 MB larger, of which
`malloc_trim(0)` returned 85 MB. It costs ~3 ms a call here, so the index step
calls it once per batch (it matters where batches are embedded in the worker:
small ones, or hosts with one CPU). Elsewhere than glibc it does nothing.
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
