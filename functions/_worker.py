"""The gunicorn worker the service runs: gthread, plus read deadlines for slow clients.

gunicorn's gthread worker waits for a connection's first byte without a thread,
but once a byte arrived the thread reads the rest with a blocking socket and no
deadline: a client trickling one byte a second holds a thread for as long as it
likes, and THREADS such clients starve every other request (`/health` too).
Here every read a thread makes on a client socket carries a deadline:

    request line + headers   REQUEST_HEAD_TIMEOUT_SECS in total, from its first byte
    body                     REQUEST_BODY_TIMEOUT_SECS, extended by one second for every
                             REQUEST_BODY_MIN_RATE_KB KiB received (a minimum average rate)

A client past its deadline is disconnected (nothing is answered: it is not
reading). Time the application spends between reads does not count.

What gunicorn itself refuses before the application sees a request (a request
line or headers over their limits, a malformed request) is answered in the
service's error envelope, not gunicorn's HTML page, and without echoing the
request: `handle_error` below.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from gunicorn import util  # type: ignore[import-untyped]
from gunicorn.http.errors import (  # type: ignore[import-untyped]
    ConfigurationProblem,
    InvalidResponseHeader,
    InvalidResponseHeaderName,
    LimitRequestHeaders,
    LimitRequestLine,
    NoMoreData,
    ParseException,
    UnsupportedTransferCoding,
)
from gunicorn.http.unreader import SocketUnreader  # type: ignore[import-untyped]
from gunicorn.workers.gthread import TConn, ThreadWorker  # type: ignore[import-untyped]

from core.config import load_settings


class DeadlineUnreader(SocketUnreader):  # type: ignore[misc]
    """A socket reader whose every `recv` waits at most until the current deadline."""

    def __init__(self, sock: socket.socket, head_secs: float, body_secs: float, rate: float) -> None:
        super().__init__(sock)
        self.head_secs, self.body_secs, self.rate = head_secs, body_secs, rate
        self.deadline: float | None = None
        self.in_body = False

    def head_phase(self) -> None:
        """The next request's head: its clock starts at its first read."""
        self.deadline, self.in_body = None, False

    def body_phase(self) -> None:
        self.deadline, self.in_body = time.monotonic() + self.body_secs, True

    def chunk(self, size_hint: int | None = None) -> bytes:
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + (self.body_secs if self.in_body else self.head_secs)
        remaining = self.deadline - now
        if remaining <= 0:
            raise NoMoreData(b"read deadline passed")
        self.sock.settimeout(remaining)
        try:
            data: bytes = super().chunk(size_hint)
        except TimeoutError:
            raise NoMoreData(b"read deadline passed") from None
        finally:
            self.sock.settimeout(None)
        if self.in_body:
            self.deadline += len(data) / self.rate
        return data


class DeadlineConn(TConn):  # type: ignore[misc]
    """gthread's connection, reading HTTP/1 through a `DeadlineUnreader`."""

    limits: tuple[float, float, float] = (10.0, 10.0, 16 * 1024.0)

    def init(self) -> None:
        fresh = not self.initialized
        super().init()
        if fresh and not self.is_http2 and isinstance(self.parser.unreader, SocketUnreader):
            reader = DeadlineUnreader(self.sock, *self.limits)
            reader.unread(self.parser.unreader.take_buffered())
            self.parser.unreader = reader


class DeadlineWorker(ThreadWorker):  # type: ignore[misc]
    def init_process(self) -> None:
        settings = load_settings()
        self.limits = (settings.request_head_timeout_secs, settings.request_body_timeout_secs,
                       settings.request_body_min_rate_kb * 1024.0)
        super().init_process()

    def accept(self, listener: socket.socket) -> None:
        """As gthread's, with a `DeadlineConn` for each accepted connection."""
        try:
            client, address = listener.accept()
        except BlockingIOError:
            return
        except OSError as exc:
            if isinstance(exc, ConnectionAbortedError):
                return
            raise
        self.nr_conns += 1
        client.setblocking(True)
        conn = DeadlineConn(self.cfg, client, address, listener.getsockname())
        conn.limits = self.limits
        self.enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        if isinstance(conn, DeadlineConn) and isinstance(getattr(conn.parser, "unreader", None),
                                                         DeadlineUnreader):
            conn.parser.unreader.head_phase()
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        reader = getattr(conn.parser, "unreader", None)
        if isinstance(reader, DeadlineUnreader):
            reader.body_phase()
        return super().handle_request(req, conn)

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """gunicorn's own refusals in the error envelope (JSON), with fixed messages."""
        status, reason, code, message = parse_refusal(exc)
        if status >= 500:
            self.log.exception("error handling a request")
        else:
            self.log.warning("refused a malformed request from %s: %s", (addr or ("",))[0],
                             type(exc).__name__)
        body = json.dumps({"success": False, "error": {"code": code, "message": message}}).encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        try:
            util.write_nonblock(client, head + body)
        except Exception:  # noqa: BLE001 - the client may be gone; nothing more to tell it
            self.log.debug("could not send the refusal")


def parse_refusal(exc: BaseException) -> tuple[int, str, str, str]:
    """(status, reason, code, message) for what gunicorn raised while reading a request."""
    if isinstance(exc, LimitRequestLine):
        return 414, "URI Too Long", "REQUEST_LINE_TOO_LONG", "the request line exceeds LIMIT_REQUEST_LINE"
    if isinstance(exc, LimitRequestHeaders):
        return (431, "Request Header Fields Too Large", "HEADERS_TOO_LARGE",
                "the request has more header fields than LIMIT_REQUEST_FIELDS, or one over "
                "LIMIT_REQUEST_FIELD_SIZE")
    if isinstance(exc, UnsupportedTransferCoding):
        return 501, "Not Implemented", "UNSUPPORTED_TRANSFER_CODING", "unsupported Transfer-Encoding"
    if isinstance(exc, ParseException) and not isinstance(
            exc, (InvalidResponseHeader, InvalidResponseHeaderName, ConfigurationProblem)):  # ours
        return 400, "Bad Request", "INVALID_REQUEST", "malformed HTTP request"
    return 500, "Internal Server Error", "INTERNAL_ERROR", "internal error; see the service log"
