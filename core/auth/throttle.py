"""Failed logins, counted per user name and per client address, in the object store.

A counter is one record per subject, `auth/login-failures/<kind>-<hex>.json`
(the hex is a digest: neither the name nor the address is stored in clear),
holding a fixed window: its start and the failures in it. Every instance reads
and writes the same records, so the limit holds across instances, unlike the
per-instance request limiter in `core.ratelimit`.

    check()   before any password or token is compared: a subject with
              AUTH_LOGIN_MAX_FAILURES failures in a window that has not ended
              -> 429 LOGIN_RATE_LIMITED, Retry-After = the rest of the window
    failed()  after a wrong credential, for each subject (read-modify-write):
              absent or window over -> put_if_absent / put_if_match {now, 1}
              window running         -> put_if_match {start, failures + 1}
              PreconditionFailed     -> another instance counted first: read again
              (a few attempts; a counter that still loses is given up, logged)

Only failures write; a correct login reads and leaves the counters as they
are, so the window ends on its own. The address is the connection's peer
(`remote_addr`), never a forwarded header a client can set.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from pydantic import ValidationError

from core.auth.records import FailureWindow
from core.errors import LoginRateLimited
from core.keys import login_failures_key
from core.storage import ObjectNotFound, ObjectStore, PreconditionFailed, StoredObject

log = logging.getLogger(__name__)
ATTEMPTS = 20  # enough for a dozen instances failing at once: each round one write wins
Subject = tuple[str, str]  # ("user", name) or ("address", ip)


class LoginThrottle:
    def __init__(self, store: ObjectStore, max_failures: int, window_secs: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.max_failures = max_failures
        self.window = window_secs
        self.clock = clock

    def check(self, *subjects: Subject) -> None:
        """Raise `LoginRateLimited` when any subject used up its failures in this window."""
        now = self.clock()
        for kind, subject in subjects:
            window, _ = self._read(login_failures_key(kind, subject))
            if window is None:
                continue
            left = window.window_started + self.window - now
            if left > 0 and window.failures >= self.max_failures:
                raise LoginRateLimited(f"too many failed logins for this {kind}; try again later",
                                       retry_after_s=max(1, math.ceil(left)))

    def failed(self, *subjects: Subject) -> None:
        for kind, subject in subjects:
            self._count(login_failures_key(kind, subject))

    def _count(self, key: str) -> None:
        for _ in range(ATTEMPTS):
            now = self.clock()
            window, stored = self._read(key)
            if window is None or window.window_started + self.window <= now:
                update = FailureWindow(window_started=now, failures=1)
            else:
                update = window.model_copy(update={"failures": window.failures + 1})
            body = update.model_dump_json().encode()
            try:
                if stored is None:
                    self.store.put_if_absent(key, body)
                else:
                    self.store.put_if_match(key, body, stored.etag)
                return
            except (PreconditionFailed, ObjectNotFound):
                continue
        log.warning("a failed-login counter lost %d races in a row; this failure is not counted", ATTEMPTS)

    def _read(self, key: str) -> tuple[FailureWindow | None, StoredObject | None]:
        try:
            stored = self.store.get(key)
        except ObjectNotFound:
            return None, None
        try:
            return FailureWindow.model_validate_json(stored.body), stored
        except ValidationError:
            return None, stored  # unreadable: start a new window over it
