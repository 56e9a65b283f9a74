"""A loopback proxy in front of a service, to play a server that dies mid-request.

Modes: `pass` relays everything; `swallow` relays requests, but for a POST it
drops the service's answer and closes the connection (the service did the work,
the client never hears of it); `refuse` closes every connection at once (the
service is down). Changing the mode closes open connections, so a client's
keep-alive connection cannot slip past it. The upstream can be switched, so a
restarted service keeps the client's URL.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

CHUNK = 65536


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._mode = "pass"
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._mode = value
        with self._lock:
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @contextmanager
    def running(self) -> Iterator[Proxy]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self.listener.close()
            self._thread.join(timeout=5)
            self.mode = "refuse"

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        mode = self._mode
        upstream = None
        try:
            if mode == "refuse":
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=120)
            with self._lock:
                self._open.update((client, upstream))
            if mode == "swallow":
                _relay_requests(client, upstream)
            else:
                forward = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
                forward.start()
                _pump(upstream, client)
                forward.join(timeout=5)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(client)
                self._open.discard(upstream)  # type: ignore[arg-type]
            client.close()
            if upstream is not None:
                upstream.close()


def _pump(source: socket.socket, dest: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            dest.sendall(data)
    except OSError:
        pass
    finally:
        with suppress(OSError):
            dest.shutdown(socket.SHUT_WR)


def _relay_requests(client: socket.socket, upstream: socket.socket) -> None:
    """HTTP/1.1 with Content-Length, one request at a time; a POST's answer is lost."""
    client_in = client.makefile("rb")
    upstream_in = upstream.makefile("rb")
    with client_in, upstream_in:
        while True:
            request = _message(client_in)
            if request is None:
                return
            upstream.sendall(request)
            response = _message(upstream_in)
            if response is None or request.startswith(b"POST"):
                return
            client.sendall(response)


def _message(stream: object) -> bytes | None:
    """One HTTP message (head and Content-Length body) from a binary file object."""
    readline = stream.readline  # type: ignore[attr-defined]
    read = stream.read  # type: ignore[attr-defined]
    head = b""
    while True:
        line = readline()
        if not line:
            return None
        head += line
        if line in (b"\r\n", b"\n"):
            break
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (read(length) if length else b"")
