"""Fault injection for tests: make the process die, or fail, at a named pipeline step.

    FAULT_INJECTION=<point>:<action>[:<bundle_id>]

    point   after_keep | after_claim | after_plan | after_index | mid_apply |
            after_apply | after_journal | after_result | after_commit
    action  crash  the process exits at once (os._exit), as a killed instance would
            raise  the step raises, as a failing dependency would

With a bundle id, only that bundle is hit. Unset (the default) costs one
comparison per step. Never set it in production.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

POINTS = ("after_keep", "after_claim", "after_plan", "after_index", "mid_apply",
          "after_apply", "after_journal", "after_result", "after_commit")
CRASH_EXIT_CODE = 137


class InjectedFault(Exception):
    """Raised at a fault point with action `raise`."""


@dataclass(frozen=True)
class Faults:
    point: str | None = None
    action: str = "crash"
    bundle_id: str | None = None

    @classmethod
    def parse(cls, spec: str | None) -> Faults:
        if not spec:
            return cls()
        parts = spec.split(":", 2)
        if parts[0] not in POINTS or len(parts) < 2 or parts[1] not in ("crash", "raise"):
            raise ValueError(f"FAULT_INJECTION must be <point>:crash|raise[:<bundle_id>], "
                             f"point one of {', '.join(POINTS)}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def at(self, point: str, bundle_id: str) -> None:
        if point != self.point or (self.bundle_id is not None and bundle_id != self.bundle_id):
            return
        if self.action == "crash":
            os._exit(CRASH_EXIT_CODE)
        raise InjectedFault(f"injected fault at {point}")
