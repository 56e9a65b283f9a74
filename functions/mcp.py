"""POST /mcp — an MCP server (streamable HTTP) with tools over search, stored files and
workspaces (`functions._mcp_tools`), on the official SDK.

Stateless: each POST is one JSON-RPC message answered in JSON on its own, with no
`Mcp-Session-Id` and no SSE stream, so any instance answers any request (Cloud Run,
Knative) and nothing is kept between requests. Before the SDK sees a request this
handler does what every endpoint does, in this order: method, Origin (a page of
another site is refused, 403, whatever AUTH_MODE), the credential (the tenant), then
the body, bounded by JSON_MAX_BODY_KB. The SDK's ASGI app runs on an asyncio loop of
this process (`a2wsgi`), with the tenant in the WSGI environ, where the tools read it.

The service's own refusals are the error envelope. The SDK's JSON-RPC errors (400,
and 404 for an unknown method at protocol 2026-07-28) keep their JSON-RPC body, which
MCP clients read, with `"success": false` added, so both kinds of client see a refusal.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import json
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, cast
from wsgiref.types import WSGIApplication

import flask

from core.context import service_context
from core.errors import (
    Forbidden,
    InvalidRequest,
    NotAcceptable,
    RequestTooLarge,
    UnsupportedMediaType,
)
from core.models import parse_json
from functions._http import caller, handled, require_method, same_host, small_body

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

TENANT = "delta_upload.tenant"  # the WSGI environ key the tools read the tenant from (headers are HTTP_*)
START_SECS = 30.0  # the SDK's task group starting on the loop thread
AFTER_ANSWER_SECS = 5.0  # an SDK task still running once its answer is sent (a2wsgi's wait)
STOP_SECS = 5.0


@handled
def mcp(request: flask.Request) -> flask.Response:
    require_method(request, "POST")  # stateless: no GET stream to open, no session to DELETE
    _same_origin(request)
    tenant = caller(request)
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the JSON-RPC message as application/json")
    if request.headers.get("Accept") and request.accept_mimetypes.quality("application/json") <= 0:
        raise NotAcceptable("this endpoint answers application/json only (no event streams)")
    limit = service_context().settings.json_max_body_kb * 1024
    request.max_content_length = limit
    body = small_body(request, limit)
    _check_message(parse_json(body, "the JSON-RPC body"))
    environ = {**request.environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": "application/json", "HTTP_ACCEPT": "application/json", TENANT: tenant}
    environ.pop("HTTP_TRANSFER_ENCODING", None)  # the body is whole now
    answer = flask.Response.from_app(_bridge.wsgi_app(), environ, buffered=True)
    return _enveloped(cast(flask.Response, answer))  # from_app builds its own class


def _same_origin(request: flask.Request) -> None:
    """A browser sends `Origin`: a page may call /mcp only from this service's own host,
    or any site a user visits could call tools with the user's credentials (or, with
    AUTH_MODE=none, with none)."""
    origin = request.headers.get("Origin")
    if origin is not None and not same_host(origin, request.host):
        raise Forbidden("a page of another origin may not call /mcp")


def _check_message(message: Any) -> None:
    """One JSON-RPC request or notification. A posted response could answer nothing (a
    stateless server sends the client no requests), and an `id` member makes a request,
    which an `id` of another type must not turn into a notification answered 202."""
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        raise InvalidRequest("the body must be one JSON-RPC request or notification: an object with a "
                             "string method (no batches)")
    if "id" in message and (isinstance(message["id"], bool) or not isinstance(message["id"], str | int)):
        raise InvalidRequest("a JSON-RPC request's id must be a string or an integer")


def _enveloped(answer: flask.Response) -> flask.Response:
    """An SDK refusal: a JSON-RPC error gets `"success": false`; any other body (none should
    get past the checks above) becomes the envelope."""
    if answer.status_code < 400:
        return answer
    try:
        message = json.loads(answer.get_data())
    except ValueError:
        message = None
    if isinstance(message, dict) and {"jsonrpc", "error"} <= message.keys():
        answer.set_data(json.dumps({"success": False, **message}))
        return answer
    if answer.status_code >= 500:
        raise RuntimeError(f"the MCP transport answered {answer.status_code}")
    refusals = {406: NotAcceptable, 413: RequestTooLarge, 415: UnsupportedMediaType}
    raise refusals.get(answer.status_code, InvalidRequest)(f"refused by the MCP transport ({answer.status})")


class _Bridge:
    """The SDK's session manager, serving on an asyncio loop thread of this process.

    Started by the first MCP request of each process, not at import: gunicorn imports the
    app and then forks its workers, and threads do not survive a fork. The manager's
    `run()` (its task group) is entered once, by one task that holds it until exit.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._app: WSGIApplication | None = None

    def wsgi_app(self) -> WSGIApplication:
        with self._lock:
            if self._app is None or self._pid != os.getpid():
                self._app, self._pid = self._start(), os.getpid()
            return self._app

    def _start(self) -> WSGIApplication:
        # imported here, not at the top: the SDK costs every other target ~0.5 s and ~30 MB at start
        from a2wsgi import ASGIMiddleware
        from a2wsgi.asgi_typing import ASGIApp

        manager = _session_manager()
        handler = cast(ASGIApp, manager.handle_request)
        bridged = ASGIMiddleware(handler, wait_time=AFTER_ANSWER_SECS, loop=_running(manager))
        return cast(WSGIApplication, bridged)


def _session_manager() -> StreamableHTTPSessionManager:
    from mcp.server.transport_security import TransportSecuritySettings

    from functions._mcp_tools import build_server

    settings = service_context().settings
    server = build_server()
    if settings.upload_service_log_level != "debug":
        # its INFO lines are about sessions: one per request here, saying that none ended
        logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
    server.streamable_http_app(
        json_response=True, stateless_http=True,
        max_request_body_size=settings.json_max_body_kb * 1024,  # checked before, in the envelope
        # Origin is checked above for every deployment; the SDK's default (Host and Origin on
        # loopback only, as its host defaults to 127.0.0.1) would refuse every real one
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return server.session_manager


def _running(manager: StreamableHTTPSessionManager) -> asyncio.AbstractEventLoop:
    """A loop on a daemon thread whose one task holds `manager.run()` until the process exits."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="mcp-loop", daemon=True).start()
    started, stopping = threading.Event(), asyncio.Event()
    running = asyncio.run_coroutine_threadsafe(_serve(manager, started, stopping), loop)
    running.add_done_callback(lambda _: started.set())  # a failed start wakes the wait too
    if not started.wait(START_SECS) or running.done():
        loop.call_soon_threadsafe(loop.stop)
        if running.done():
            running.result()  # raises why it stopped
        raise RuntimeError("the MCP session manager did not start")
    pid = os.getpid()

    def stop() -> None:
        if os.getpid() == pid:  # not in a child forked after the start: it has no loop thread
            loop.call_soon_threadsafe(stopping.set)
            with contextlib.suppress(Exception):
                running.result(STOP_SECS)
            loop.call_soon_threadsafe(loop.stop)

    atexit.register(stop)
    return loop


async def _serve(manager: StreamableHTTPSessionManager, started: threading.Event,
                 stopping: asyncio.Event) -> None:
    async with manager.run():
        started.set()
        await stopping.wait()


_bridge = _Bridge()
