"""Per-tenant request and byte budgets (token buckets refilled every minute).

Instances share nothing, so each enforces the limits on its own share of the
traffic: with N instances a tenant gets at most N times the configured rate.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from core.errors import RetryLater


class RateLimited(RetryLater):
    code = "RATE_LIMITED"
    http_status = 429


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, requests_per_min: int, bytes_per_min: int) -> None:
        self.limits = {"requests": requests_per_min, "bytes": bytes_per_min}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def charge(self, tenant: str, requests: int = 0, size: int = 0) -> None:
        """Take `requests` and `size` bytes from the tenant's budgets, or raise RateLimited."""
        with self._lock:
            for kind, amount in (("requests", requests), ("bytes", size)):
                limit = self.limits[kind]
                if limit <= 0 or amount <= 0:
                    continue
                bucket = self._refilled(tenant, kind, limit)
                if bucket.tokens < amount and not (amount > limit and bucket.tokens >= limit):
                    wait = math.ceil((amount - bucket.tokens) * 60 / limit) if amount <= limit else 60
                    raise RateLimited(f"{kind} per minute limit reached", retry_after_s=max(1, wait))
                bucket.tokens -= amount

    def _refilled(self, tenant: str, kind: str, limit: int) -> _Bucket:
        now = time.monotonic()
        bucket = self._buckets.setdefault((tenant, kind), _Bucket(float(limit), now))
        bucket.tokens = min(float(limit), bucket.tokens + (now - bucket.updated) * limit / 60)
        bucket.updated = now
        return bucket
