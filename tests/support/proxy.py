"""A loopback proxy in front of a service, to play a server that dies mid-request.

Modes: `pass` relays everything; `swallow` relays requests, but for a POST it
drops the service's answer and closes the connection (the service did the work,
the client never hears of it); `refuse` closes every connection at once (the
service is down). Two modes play a slow network in front of object storage:
`hold-writes` keeps each PUT, POST or DELETE until `release()` and only then
delivers it, whether its sender still waits or gave up long ago (reads pass);
`late-answers` delivers writes at once but keeps their answers until `release()`.
Changing the mode closes open connections, so a client's
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
        self._released = threading.Event()
        self.held = 0  # writes kept back so far (hold-writes, late-answers)
        self.delivered = 0  # of those, delivered after `release()`
        self.hold_marker = b""  # only writes whose request line holds this are kept

    def release(self) -> None:
        """Let every kept write (or answer) go, and the ones that come later."""
        self._released.set()

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
            if mode in ("hold-writes", "late-answers"):
                with self._lock:
                    self._open.add(client)
                self._hold(client, requests_too=mode == "hold-writes")
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


    def _hold(self, client: socket.socket, requests_too: bool) -> None:
        """One request at a time, each on its own upstream connection made only when it
        is delivered (a server with a thread per connection is not tied up by the
        requests kept back): a write (or its answer) waits for `release()`."""
        with client.makefile("rb") as client_in:
            while (request := _request(client_in, client)) is not None:
                method = request.split(b" ", 1)[0]
                line = request.split(b"\r\n", 1)[0]
                write = method in (b"PUT", b"POST", b"DELETE") and self.hold_marker in line
                if write:
                    with self._lock:
                        self.held += 1
                if write and requests_too:
                    self._released.wait()
                with (socket.create_connection(("127.0.0.1", self.upstream_port), timeout=120) as upstream,
                      upstream.makefile("rb") as upstream_in):
                    upstream.sendall(request)
                    response = _response(upstream_in, head_only=method == b"HEAD")
                if response is None:
                    return
                if write and not requests_too:
                    self._released.wait()
                if write:
                    with self._lock:
                        self.delivered += 1
                try:
                    client.sendall(response)
                except OSError:  # the sender gave up long ago; the write is delivered all the same
                    if requests_too:
                        continue
                    return


def _request(stream: object, client: socket.socket) -> bytes | None:
    """One request, with `Expect: 100-continue` answered here and dropped, so the
    whole request can be kept back and delivered later."""
    head = _head(stream)
    if head is None:
        return None
    lines = head.split(b"\r\n")
    if any(line.lower().startswith(b"expect:") for line in lines):
        with suppress(OSError):
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        head = b"\r\n".join(line for line in lines if not line.lower().startswith(b"expect:"))
    return head + _body(stream, head)


def _response(stream: object, head_only: bool) -> bytes | None:
    while (head := _head(stream)) is not None and head.startswith(b"HTTP/1.1 100"):
        continue
    if head is None:
        return None
    return bytes(head if head_only else head + _body(stream, head))


def _head(stream: object) -> bytes | None:
    readline = stream.readline  # type: ignore[attr-defined]
    head = b""
    while True:
        line = readline()
        if not line:
            return None
        head += line
        if line in (b"\r\n", b"\n"):
            return bytes(head)


def _body(stream: object, head: bytes) -> bytes:
    read = stream.read  # type: ignore[attr-defined]
    readline = stream.readline  # type: ignore[attr-defined]
    fields = [line.lower() for line in head.split(b"\r\n")]
    if b"transfer-encoding: chunked" in fields:
        body = b""
        while True:
            size_line = readline()
            body += size_line
            size = int(size_line.split(b";")[0], 16)
            body += read(size + 2)
            if size == 0:
                return bytes(body)
    for line in fields:
        if line.startswith(b"content-length:"):
            return bytes(read(int(line.split(b":", 1)[1])))
    return b""


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
    """One HTTP message (head and body) from a binary file object."""
    head = _head(stream)
    return None if head is None else head + _body(stream, head)
