"""The client's retry policy, against a scripted HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.client.transport import Refused, Transport, TransportError


class Scripted(ThreadingHTTPServer):
    def __init__(self, answers: list[tuple[int, dict[str, str]]]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answers = answers
        self.bundle_bodies: list[bytes] = []


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.server.bundle_bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        status, headers = self.server.answers.pop(0)
        body = json.dumps({"success": status == 200, "sequence_number": 1,
                           "error": {"code": f"E{status}", "message": "scripted"}}).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted(request: pytest.FixtureRequest) -> Iterator[Scripted]:
    server = Scripted(list(request.param))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def transport(server: Scripted, sleeps: list[float], retries: int = 5) -> Transport:
    return Transport(f"http://127.0.0.1:{server.server_address[1]}", retries=retries,
                     sleep=sleeps.append)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "b.tar.gz"
    path.write_bytes(b"same bytes every time")
    return path


@pytest.mark.parametrize("scripted", [[(503, {"Retry-After": "3"}), (429, {}), (500, {}), (200, {})]],
                         indirect=True)
def test_transient_answers_are_retried_with_the_same_bundle(
    scripted: Scripted, bundle: Path
) -> None:
    sleeps: list[float] = []
    answer = transport(scripted, sleeps).upload(bundle, {"workspace_path": "/w"}, progress=False)
    assert answer["success"] is True
    assert len(scripted.bundle_bodies) == 4
    assert all(b"\r\n\r\nsame bytes every time\r\n" in body for body in scripted.bundle_bodies)
    assert sleeps[0] >= 3, "Retry-After is a floor"
    assert all(0 <= s <= 30 for s in sleeps[1:])


@pytest.mark.parametrize("scripted", [[(400, {}), (200, {})], [(409, {}), (200, {})]], indirect=True)
def test_other_client_errors_are_final(scripted: Scripted, bundle: Path) -> None:
    sleeps: list[float] = []
    with pytest.raises(Refused):
        transport(scripted, sleeps).upload(bundle, {}, progress=False)
    assert len(scripted.bundle_bodies) == 1 and sleeps == []


@pytest.mark.parametrize("scripted", [[(503, {})] * 3], indirect=True)
def test_retries_run_out(scripted: Scripted, bundle: Path) -> None:
    sleeps: list[float] = []
    with pytest.raises(TransportError, match="503"):
        transport(scripted, sleeps, retries=2).upload(bundle, {}, progress=False)
    assert len(scripted.bundle_bodies) == 3 and len(sleeps) == 2


def test_an_unreachable_service_is_a_transport_error(bundle: Path) -> None:
    sleeps: list[float] = []
    with pytest.raises(TransportError, match="cannot reach"):
        Transport("http://127.0.0.1:9", retries=1, sleep=sleeps.append).upload(bundle, {}, False)
    assert len(sleeps) == 1
