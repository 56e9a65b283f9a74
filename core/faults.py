"""Fault injection for tests: make the process die, fail, freeze or stall at a named step.

    FAULT_INJECTION=<point>:<action>[:<bundle_id>]

    point   after_keep | after_claim | mid_plan | after_plan | mid_index | after_index |
            mid_apply | mid_batch | after_apply | after_journal | after_result | after_commit
            reindex_after_batch | reindex_before_switch | reindex_after_switch (`core.reindex`;
            the id is then the served collection's name) | mid_delete
            (mid_plan: surveyed, nothing stored; mid_index: after re-pointing and after
            each batch of files; mid_apply: between write batches; mid_batch: inside
            the first batch of writes, or of copies if there are none; mid_delete: a
            workspace deletion, after its points and each batch of objects, where the
            id to name is the workspace key)
    action  crash    the process exits at once (os._exit), as a killed instance would
            raise    the step raises, as a failing dependency would
            pause    the process stops itself with SIGSTOP, as a frozen instance would,
                     until someone sends SIGCONT (once per process)
            sleep=S  the step waits S seconds, as a starved instance would (once per process)

With a bundle id, only that bundle is hit. Unset (the default) costs one
comparison per step. Never set it in production.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

POINTS = ("after_keep", "after_claim", "mid_plan", "after_plan", "mid_index", "after_index",
          "mid_apply", "mid_batch", "after_apply", "after_journal", "after_result", "after_commit",
          "reindex_after_batch", "reindex_before_switch", "reindex_after_switch", "mid_delete")
ONCE = threading.Lock()
CRASH_EXIT_CODE = 137


class InjectedFault(Exception):
    """Raised at a fault point with action `raise`."""


@dataclass(frozen=True)
class Faults:
    point: str | None = None
    action: str = "crash"
    bundle_id: str | None = None
    fired: list[bool] = field(default_factory=list, compare=False)  # pause and sleep: once

    @classmethod
    def parse(cls, spec: str | None) -> Faults:
        if not spec:
            return cls()
        parts = spec.split(":", 2)
        if parts[0] not in POINTS or len(parts) < 2 or not _known_action(parts[1]):
            raise ValueError(f"FAULT_INJECTION must be <point>:crash|raise|pause|sleep=<secs>"
                             f"[:<bundle_id>], point one of {', '.join(POINTS)}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def at(self, point: str, bundle_id: str) -> None:
        if point != self.point or (self.bundle_id is not None and bundle_id != self.bundle_id):
            return
        if self.action == "crash":
            os._exit(CRASH_EXIT_CODE)
        if self.action == "raise":
            raise InjectedFault(f"injected fault at {point}")
        with ONCE:
            if self.fired:
                return
            self.fired.append(True)
        if self.action == "pause":
            # aimed at this thread, so that it is the one that stops at once (a signal
            # sent to the process may be taken by another thread, while this one runs on)
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
        else:
            time.sleep(float(self.action.removeprefix("sleep=")))


def _known_action(action: str) -> bool:
    if action in ("crash", "raise", "pause"):
        return True
    try:
        return action.startswith("sleep=") and 0 <= float(action.removeprefix("sleep=")) <= 3600
    except ValueError:
        return False
