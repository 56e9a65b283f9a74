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
"""

from __future__ import annotations

import socket
import time
from typing import Any

from gunicorn.http.errors import NoMoreData  # type: ignore[import-untyped]
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
