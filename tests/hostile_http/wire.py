"""Raw-socket helpers for the hostile-HTTP suite (loopback only, every read bounded)."""

from __future__ import annotations

import socket
import time


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data`, return what the service answers (b"" if it just closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            return sock.recv(65536)
        except OSError:
            return b""


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


def health_within(port: int, seconds: float) -> float:
    """Seconds until `GET /health` answers 200; fails past `seconds`."""
    started = time.monotonic()
    answer = exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", seconds)
    elapsed = time.monotonic() - started
    assert status_of(answer) == 200, answer[:80]
    assert elapsed < seconds
    return elapsed
