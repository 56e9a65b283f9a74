"""Raw-socket helpers for the hostile-HTTP suite (loopback only, every read bounded)."""

from __future__ import annotations

import socket
import time


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data`, return what the service answers: its head and, when it says how
    long the body is, the whole body (b"" if it just closes). gunicorn may write the
    head and the body apart, so one `recv` is not enough; every read is bounded."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            while not _complete(answer):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except OSError:
            pass
    return answer


def _complete(answer: bytes) -> bool:
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or b"0")
    return True  # no length given: the head is what the tests read


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
