"""Hostile HTTP against the real service: request line, headers, slow clients.

Each test failed on the service as functions-framework started it before
`functions.serve` (no request-line limit, no read deadline, settings ignored).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.bench.common import worker_pids
from tests.hostile_http.wire import exchange, health_within, status_of
from tests.support.service import ServiceProcess


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("parser-limits")
    svc = ServiceProcess({"WORK_DIR": str(root), "INDEXING_ENABLED": "false",
                          "LIMIT_REQUEST_FIELDS": "20", "LIMIT_REQUEST_FIELD_SIZE": "1024"},
                         root / "service.log").start()
    yield svc
    svc.stop()


def test_a_long_request_line_is_refused_at_once(service: ServiceProcess) -> None:
    worker = worker_pids(service.process.pid)[-1]  # type: ignore[union-attr]
    before, started = _cpu_seconds(worker), time.monotonic()
    answer = exchange(service.port, b"GET /" + b"a" * (4 << 20) + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    elapsed, cpu = time.monotonic() - started, _cpu_seconds(worker) - before
    assert status_of(answer) in (0, 414)  # 414, or closed while the client still sends
    assert elapsed < 1.0 and cpu < 0.3, (elapsed, cpu)  # before: 1.4 s wall, 1.1 s CPU
    health_within(service.port, 2)


def envelope(answer: bytes) -> dict[str, Any]:
    """The JSON error envelope of a raw answer (never gunicorn's HTML page)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    parsed: dict[str, Any] = json.loads(body)
    assert parsed["success"] is False
    return parsed["error"]  # type: ignore[no-any-return]


def test_too_many_header_fields_are_refused(service: ServiceProcess) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(25))
    answer = exchange(service.port, b"GET /health HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n")
    assert status_of(answer) == 431 and envelope(answer)["code"] == "HEADERS_TOO_LARGE"


def test_a_large_header_field_is_refused(service: ServiceProcess) -> None:
    field = b"X-Big: " + b"b" * 2000 + b"\r\n"
    answer = exchange(service.port, b"GET /health HTTP/1.1\r\nHost: t\r\n" + field + b"\r\n")
    assert status_of(answer) == 431 and envelope(answer)["code"] == "HEADERS_TOO_LARGE"
    assert b"bbbb" not in answer, "the refusal does not echo the request"


def test_a_path_the_router_cannot_match_gets_the_error_envelope(service: ServiceProcess) -> None:
    answer = exchange(service.port, b"GET /api/v1/delta/status%0A<b>x</b> HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status_of(answer) == 404 and envelope(answer)["code"] == "NOT_FOUND"
    assert b"<b>" not in answer


def test_a_request_line_over_the_limit_and_a_malformed_one_get_the_error_envelope(
    service: ServiceProcess,
) -> None:
    answer = exchange(service.port, b"GET /" + b"q" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status_of(answer) == 414 and envelope(answer)["code"] == "REQUEST_LINE_TOO_LONG"
    assert b"qqqq" not in answer
    answer = exchange(service.port, b"G\x01T /<script> HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status_of(answer) == 400 and envelope(answer)["code"] == "INVALID_REQUEST"
    assert b"<script>" not in answer and b"<html>" not in answer


def _trickle(port: int, data: bytes, until: float) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            for byte in data:
                if time.monotonic() > until:
                    return
                sock.send(bytes([byte]))
                time.sleep(0.5)
    except OSError:
        return  # the service closed it: what the test wants


HEAD = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 200
BODY = (b"POST /api/v1/delta/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 500\r\n\r\n" + b" " * 500)


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("slow", [HEAD, BODY], ids=["head", "body"])
def test_trickling_clients_cannot_starve_health(tmp_path: Path, threads: str, slow: bytes) -> None:
    svc = ServiceProcess({"WORK_DIR": str(tmp_path), "INDEXING_ENABLED": "false", "THREADS": threads,
                          "REQUEST_HEAD_TIMEOUT_SECS": "2", "REQUEST_BODY_TIMEOUT_SECS": "2"},
                         tmp_path / "service.log").start()
    until = time.monotonic() + 10
    tricklers = [threading.Thread(target=_trickle, args=(svc.port, slow, until), daemon=True)
                 for _ in range(int(threads))]
    try:
        for trickler in tricklers:
            trickler.start()
        time.sleep(0.8)  # every thread is now reading from a trickler
        health_within(svc.port, 4)  # before: answered only once the tricklers stopped (10 s)
    finally:
        svc.kill()  # a graceful stop would wait for the tricklers' deadlines
