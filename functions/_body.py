"""Request bodies as they are read: counted, and charged to the caller's byte budget.

`handled` puts a `CountingStream` in front of `wsgi.input` before anything reads
the body, so RATE_LIMIT_MB_PER_MIN is counted on the bytes actually read, with
or without `Content-Length` (chunked bodies): the bytes read before the caller
was known are charged when it is (`charge_to`), every later read as it happens,
and the read that exhausts the budget is refused (`RateLimited`, 429).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask

Charge = Callable[[int], None]


class CountingStream:
    """A read-only wrapper of a WSGI input stream that counts and charges what is read."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.count = 0
        self.eof = False
        self._charge: Charge | None = None

    def charge_to(self, charge: Charge) -> None:
        """Charge what was read so far, then every later read, to `charge`."""
        self._charge = charge
        if self.count:
            charge(self.count)

    def _counted(self, data: bytes, size: int | None = -1) -> bytes:
        self.eof = self.eof or (not data and size != 0)
        self.count += len(data)
        if data and self._charge is not None:
            self._charge(len(data))
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._counted(self.raw.read(-1 if size is None else size), size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._counted(self.raw.readline(-1 if size is None else size), size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def __iter__(self) -> CountingStream:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        close = getattr(self.raw, "close", None)
        if close is not None:
            close()


def count_body(request: flask.Request) -> CountingStream:
    """Install (once) and return the request's counting stream; call before any read."""
    stream = request.environ.get("wsgi.input")
    if isinstance(stream, CountingStream):
        return stream
    counting = CountingStream(stream if stream is not None else _Empty())
    request.environ["wsgi.input"] = counting
    return counting


def unread_body(request: flask.Request) -> bool:
    """Whether the request may still have body bytes nobody read (the answer then closes
    the connection: functions-framework would otherwise read the rest into memory)."""
    counted = count_body(request)
    if counted.eof:
        return False
    if request.content_length is not None:
        return counted.count < request.content_length
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


class _Empty:
    def read(self, size: int = -1) -> bytes:
        return b""

    def readline(self, size: int = -1) -> bytes:
        return b""
