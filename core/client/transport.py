"""HTTP to the service, with retries that never re-apply a bundle.

Connection errors, 429 and 5xx are retried with exponential backoff and full
jitter, waiting at least what `Retry-After` asks; any other 4xx is final. A
retried upload re-sends the very same bundle file, so its bundle id is the
same and the server answers a duplicate instead of applying it twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_DELAY_S = 30.0


class TransportError(Exception):
    """The service could not be reached or kept failing (worth trying later)."""


class Refused(Exception):
    """The service refused the request for good (a 4xx other than 429)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class Transport:
    def __init__(self, endpoint: str, retries: int = 5, base_delay_s: float = 0.5,
                 timeout_s: float = 330.0, sleep: Callable[[float], None] = time.sleep,
                 token: str | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.retries = retries
        self.base_delay_s = base_delay_s
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.session.close()

    def get_json(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._call(lambda: self.session.get(self.endpoint + path, params=params,
                                                   timeout=(5, 60)))

    def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(lambda: self.session.post(self.endpoint + path, json=body, timeout=(5, 60)))

    def upload(self, bundle: Path, fields: dict[str, str], progress: bool) -> dict[str, Any]:
        def send() -> requests.Response:
            size = bundle.stat().st_size
            with bundle.open("rb") as raw, tqdm(total=size, unit="B", unit_scale=True,
                                                 desc="upload", disable=not progress,
                                                 leave=False) as bar:
                body = _Progress(raw, bar)
                files = {"bundle": (bundle.name, body, "application/gzip")}
                return self.session.post(self.endpoint + "/api/v1/delta/upload", data=fields,
                                         files=files, timeout=(5, self.timeout_s))
        return self._call(send)

    def upload_direct(self, bundle: Path, bundle_id: str, fields: dict[str, str],
                      workspace: dict[str, str], progress: bool,
                      poll_s: float = 1.0, wait_s: float = 900.0) -> dict[str, Any] | None:
        """PUT the bundle straight to the bucket through a presigned URL, then wait for
        the object-created event to commit it. None when the service has no direct
        uploads (filesystem storage): the caller posts the bundle instead."""
        try:
            issued = self._call(lambda: self.session.post(
                self.endpoint + "/api/v1/delta/upload-url", data={**fields, "bundle_id": bundle_id},
                timeout=(5, 60)))
        except Refused as exc:
            if exc.status == 501:
                return None
            raise

        def put() -> requests.Response:
            with bundle.open("rb") as raw, tqdm(total=bundle.stat().st_size, unit="B",
                                                 unit_scale=True, desc="upload (direct)",
                                                 disable=not progress, leave=False) as bar:
                return self.session.put(issued["upload_url"], data=_Progress(raw, bar),
                                        headers={"Content-Length": str(bundle.stat().st_size)},
                                        timeout=(5, self.timeout_s))

        self._call(put, expect_json=False)
        deadline = time.monotonic() + wait_s
        while True:
            state = self.get_json(f"/api/v1/delta/bundles/{bundle_id}", workspace)
            if state.get("state") == "committed":
                return dict(state["result"])
            if state.get("state") == "refused":
                error = state.get("error", {})
                raise Refused(422, str(error.get("code")), str(error.get("message")))
            if time.monotonic() > deadline:
                raise TransportError(f"bundle {bundle_id} was uploaded but not processed in time")
            self.sleep(poll_s)

    def _call(self, send: Callable[[], requests.Response], expect_json: bool = True) -> dict[str, Any]:
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            wait = None
            try:
                response = send()
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"cannot reach {self.endpoint}: {type(exc).__name__}"
            else:
                if response.status_code < 400:
                    return dict(response.json()) if expect_json else {}
                error = _error_of(response)
                if response.status_code not in RETRY_STATUS:
                    raise Refused(response.status_code, error[0], error[1])
                last = f"{response.status_code} {error[0]}: {error[1]}"
                wait = _retry_after(response)
            if attempt == self.retries:
                break
            backoff = random.uniform(0, min(MAX_DELAY_S, self.base_delay_s * 2**attempt))
            self.sleep(max(backoff, wait or 0.0))
        raise TransportError(last)


class _Progress:
    """A file object that advances a progress bar as requests reads it."""

    def __init__(self, raw: Any, bar: Any) -> None:
        self.raw = raw
        self.bar = bar

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.raw.read(size)
        self.bar.update(len(data))
        return data


def _error_of(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error", {})
        return str(error.get("code", "HTTP_ERROR")), str(error.get("message", ""))
    except ValueError:
        return "HTTP_ERROR", response.text[:200]


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return min(60.0, float(value))
    except ValueError:
        return None
