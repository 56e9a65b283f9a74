"""Per-tenant and per-address budgets (token buckets refilled continuously over a minute).

    kind        key          limit (per minute)                    charged
    requests    tenant       RATE_LIMIT_REQUESTS_PER_MIN           once per authenticated request
    bytes       tenant       RATE_LIMIT_MB_PER_MIN                 every body byte as it is read
    failures    address      RATE_LIMIT_AUTH_FAILURES_PER_MIN      every failed authentication
    open        address      RATE_LIMIT_OPEN_PER_MIN               events, metrics, openapi

A charge the bucket cannot cover is refused (`RateLimited`), whatever its size:
a request larger than the whole budget never passes, and a body read in pieces
is refused at the piece that exhausts it. Instances share nothing, so each
enforces the limits on its own share of the traffic: with N instances a tenant
gets at most N times the configured rate.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from core.errors import RetryLater

KINDS = ("requests", "bytes", "failures", "open")


class RateLimited(RetryLater):
    code = "RATE_LIMITED"
    http_status = 429


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, requests_per_min: int, bytes_per_min: int,
                 failures_per_min: int = 0, open_per_min: int = 0) -> None:
        self.limits = {"requests": requests_per_min, "bytes": bytes_per_min,
                       "failures": failures_per_min, "open": open_per_min}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def charge(self, tenant: str, requests: int = 0, size: int = 0) -> None:
        """Take `requests` and `size` bytes from the tenant's budgets, or raise RateLimited."""
        with self._lock:
            for kind, amount in (("requests", requests), ("bytes", size)):
                self._take(tenant, kind, amount)

    def charge_kind(self, key: str, kind: str, amount: int = 1) -> None:
        """Take `amount` from one budget (`KINDS`) of `key`, or raise RateLimited."""
        with self._lock:
            self._take(key, kind, amount)

    def check(self, key: str, kind: str) -> None:
        """Raise RateLimited when `key` has not one unit of the `kind` budget left."""
        with self._lock:
            limit = self.limits[kind]
            if limit > 0 and self._refilled(key, kind, limit).tokens < 1:
                raise RateLimited(f"{kind} per minute limit reached", retry_after_s=max(1, 60 // limit))

    def _take(self, key: str, kind: str, amount: int) -> None:
        limit = self.limits[kind]
        if limit <= 0 or amount <= 0:
            return
        bucket = self._refilled(key, kind, limit)
        if bucket.tokens < amount:
            wait = math.ceil((amount - bucket.tokens) * 60 / limit) if amount <= limit else 60
            raise RateLimited(f"{kind} per minute limit reached", retry_after_s=max(1, min(wait, 60)))
        bucket.tokens -= amount

    def _refilled(self, key: str, kind: str, limit: int) -> _Bucket:
        now = time.monotonic()
        bucket = self._buckets.setdefault((key, kind), _Bucket(float(limit), now))
        bucket.tokens = min(float(limit), bucket.tokens + (now - bucket.updated) * limit / 60)
        bucket.updated = now
        return bucket
