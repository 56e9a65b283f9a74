"""What keeps parallel test processes (pytest-xdist workers, or two runs on one machine)
apart: a slot of its own per worker, and a lock for what only one may do at a time.

`worker_slot()` is (index, count) of this xdist worker, (0, 1) in a plain run: ports
and port blocks are picked from disjoint sets by it (tests/support/service.py,
tests/support/ceph_rgw.py). `machine_lock(name)` serialises a step across every process
on the machine, e.g. an `apt-get install` (dpkg takes one installer at a time).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def worker_slot() -> tuple[int, int]:
    """(index, count) of this pytest-xdist worker ("gw0".."gwN-1"); (0, 1) outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or "1")
    if not name.startswith("gw") or not name[2:].isdigit() or count < 2:
        return 0, 1
    return int(name[2:]) % count, count


@contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock named `name` for every process on this machine (flock)."""
    path = Path(tempfile.gettempdir()) / f"delta-upload-tests-{name}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
