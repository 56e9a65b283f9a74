"""Hostile bodies against the real service: bounded before they are read, counted as read.

Each test failed before: events read a whole body into memory, upload-url and
upload read the body before refusing a header credential, and chunked bodies
were never charged to RATE_LIMIT_MB_PER_MIN.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

import pytest
import requests

from core.auth import hash_key
from local.bench.common import proc_status, worker_pids
from tests.hostile_http.wire import exchange, status_of
from tests.support.bundles import BundleBuilder
from tests.support.service import ServiceProcess

KEY = "hostile-http-test-key-0123456789"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> ServiceProcess:
    root = tmp_path_factory.mktemp("bodies")
    keys = root / "keys.json"
    keys.write_text(json.dumps({"tenants": {"alice": [hash_key(KEY)]}}))
    svc = ServiceProcess({"WORK_DIR": str(root), "AUTH_MODE": "api_key", "API_KEYS_FILE": str(keys),
                          "INDEXING_ENABLED": "false"}, root / "service.log").start()
    yield svc  # type: ignore[misc]
    svc.stop()


@pytest.mark.parametrize(("path", "headers", "expected"), [
    ("/api/v1/delta/events", "Content-Type: application/json", 413),
    ("/api/v1/delta/upload-url", "Content-Type: application/json", 413),
    ("/api/v1/delta/upload", "Authorization: Bearer wrong\r\nContent-Type: multipart/form-data; boundary=b",
     401),
    ("/api/v1/delta/upload-url", "X-API-Key: wrong\r\nContent-Type: application/json", 401),
])
def test_a_huge_declared_body_is_refused_before_it_is_sent(keyed: ServiceProcess, path: str, headers: str,
                                                          expected: int) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\nContent-Length: 209715200\r\n\r\n"
    answer = exchange(keyed.port, head.encode() + b"{", timeout=3)  # before: waited for 200 MB
    assert status_of(answer) == expected, answer[:120]


def test_a_chunked_flood_to_events_keeps_the_worker_small(keyed: ServiceProcess) -> None:
    worker = worker_pids(keyed.process.pid)[-1]  # type: ignore[union-attr]
    before = proc_status(worker, "VmHWM")
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
    with socket.create_connection(("127.0.0.1", keyed.port), timeout=5) as sock:
        sock.sendall(b"POST /api/v1/delta/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(96):
                sock.sendall(chunk)
        except OSError:
            pass  # refused and closed at the cap
    grown = proc_status(worker, "VmHWM") - before
    assert grown < 24 << 20, grown  # before: the whole 96 MB was held


def test_a_bad_session_field_is_refused_before_the_bundle_is_read(keyed: ServiceProcess) -> None:
    head = (b"POST /api/v1/delta/upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=bb\r\n\r\n")
    part = (b'--bb\r\nContent-Disposition: form-data; name="session"\r\n\r\nwrong\r\n'
            b'--bb\r\nContent-Disposition: form-data; name="bundle"; filename="b.tar.gz"\r\n\r\n')
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", keyed.port), timeout=5) as sock:
        sock.sendall(head + b"%x\r\n%s\r\n" % (len(part), part))
        sock.settimeout(0.2)
        try:
            while sent < 64 << 20 and not answer:
                sock.sendall(b"%x\r\n%s\r\n" % (1 << 20, os.urandom(16) * 65536))
                sent += 1 << 20
                with contextlib.suppress(TimeoutError):
                    answer = sock.recv(4096)
        except OSError:
            pass
    assert status_of(answer) in (0, 401) and sent < 16 << 20, (sent, answer[:80])


def _chunked_upload(svc: ServiceProcess, bundle: bytes) -> int:
    boundary = "hostile"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="workspace_path"\r\n\r\n/work/r\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="bundle"; filename="b.tar.gz"\r\n\r\n'
            ).encode() + bundle + f"\r\n--{boundary}--\r\n".encode()
    pieces = (body[i:i + 65536] for i in range(0, len(body), 65536))  # a generator: chunked
    try:
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return requests.post(svc.url + "/api/v1/delta/upload", data=pieces, timeout=30,
                             headers=headers).status_code
    except requests.ConnectionError:
        return 0  # refused while sending


def test_chunked_uploads_are_charged_to_the_byte_limit(tmp_path: Path) -> None:
    svc = ServiceProcess({"WORK_DIR": str(tmp_path), "INDEXING_ENABLED": "false",
                          "RATE_LIMIT_MB_PER_MIN": "1"},
                         tmp_path / "service.log").start()
    try:
        bundles = [BundleBuilder().created(f"f{i}.bin", os.urandom(400_000)).build() for i in range(3)]
        codes = [_chunked_upload(svc, b) for b in bundles]
        assert codes[:2] == [200, 200] and codes[2] in (0, 429), codes  # before: three 200s
        big = BundleBuilder().created("big.bin", os.urandom(1_200_000)).build()
        assert _chunked_upload(svc, big) in (0, 429)  # larger than the whole budget
    finally:
        svc.stop()
