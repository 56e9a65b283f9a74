"""What every handler shares: JSON responses and the one error mapping."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from core import metrics
from core.context import service_context
from core.errors import (
    BundleTooLarge,
    FormFieldTooLarge,
    InvalidRequest,
    MethodNotAllowed,
    RequestTooLarge,
    Unauthorized,
    error_response,
)
from core.logs import bound, trace_fields
from functions._body import count_body, unread_body

log = logging.getLogger("functions")
Handler = Callable[[flask.Request], flask.Response]
READ_ONLY = ("GET", "HEAD")  # every GET endpoint: a HEAD answers as the GET, without the body
SMALL_BODY = 16 * 1024  # JSON bodies read before authenticating (/auth/*)
DEFAULT_PORTS = {"http": 80, "https": 443}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> flask.Response:
    response = flask.jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def handled(fn: Handler) -> Handler:
    """Turn any exception into the wire format's error envelope; log and count
    every request (one JSON line with `httpRequest`, bound to its trace id)."""

    @functools.wraps(fn)
    def wrapper(request: flask.Request) -> flask.Response:
        started = time.monotonic()
        project = service_context().settings.google_cloud_project
        trace = trace_fields(request.headers.get("traceparent"),
                             request.headers.get("X-Cloud-Trace-Context"), project)
        with bound(**trace):
            try:
                count_body(request)  # before anything reads it: RATE_LIMIT_MB_PER_MIN counts real bytes
                response = fn(request)
            except RequestEntityTooLarge:
                response = _error(_too_large(request))
            except HTTPException as exc:
                response = _error(InvalidRequest(f"malformed request: {exc.name}"))
            except Exception as exc:  # noqa: BLE001 - mapped to a 5xx envelope below
                response = _error(exc)
            if unread_body(request):
                response = _closing(response)
            _log_request(request, response, time.monotonic() - started)
        return response

    return wrapper


def framework_error(exc: HTTPException) -> flask.Response:
    """An HTTP error raised before any handler runs (a path the framework's router cannot
    match, such as one holding `%0A`): the error envelope, not Werkzeug's HTML page."""
    status = exc.code or 400
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(status, "INVALID_REQUEST")
    message = "no such endpoint" if status == 404 else f"malformed request: {exc.name}"
    return json_response(status, {"success": False, "error": {"code": code, "message": message}})


def _route(path: str) -> str:
    """A bounded label for metrics: bundle ids are not routes."""
    return "/api/v1/delta/bundles/{bundle_id}" if path.startswith("/api/v1/delta/bundles/") else path


def _log_request(request: flask.Request, response: flask.Response, seconds: float) -> None:
    route = _route(request.path)
    metrics.HTTP_REQUESTS.labels(route, str(response.status_code)).inc()
    metrics.HTTP_SECONDS.labels(route).observe(seconds)
    level = logging.WARNING if response.status_code >= 500 else logging.INFO
    log.log(level, "%s %s %s", request.method, request.path, response.status_code, extra={
        "httpRequest": {
            "requestMethod": request.method,
            "requestUrl": request.path,
            "status": response.status_code,
            "requestSize": str(request.content_length or 0),
            "responseSize": str(response.content_length or 0),
            "userAgent": request.user_agent.string,
            "remoteIp": request.remote_addr,
            "latency": f"{seconds:.3f}s",
        },
    })


def _too_large(request: flask.Request) -> RequestTooLarge | BundleTooLarge | FormFieldTooLarge:
    """Werkzeug says 413 both for a body over `max_content_length` (the bundle's cap, set
    by the upload handler, or a small one, set by upload-url) and for a form over its
    own caps: tell them apart, so the message names the limit that was hit."""
    limit, length = request.max_content_length, request.content_length
    if limit is not None and (length is None or length > limit):
        if limit < service_context().settings.max_bundle_bytes:
            return RequestTooLarge(f"the request body exceeds {limit // 1024} KiB")
        return BundleTooLarge("request body exceeds MAX_BUNDLE_SIZE_MB")
    return FormFieldTooLarge(f"a form text field exceeds {(request.max_form_memory_size or 0) // 1000} kB, "
                             f"or the form has over {request.max_form_parts} parts")


def _closing(response: flask.Response) -> flask.Response:
    """An answer sent without reading the rest of the body: functions-framework reads
    the whole body after every non-streamed response (`read_request`), so the answer
    is streamed, and the connection closed (where the next request starts is unknown)."""
    payload = response.get_data()
    response.response = iter([payload])
    response.headers["Connection"] = "close"
    return response


def header_token(request: flask.Request) -> str | None:
    """A credential the request carries outside its body: `Authorization: Bearer`,
    `X-API-Key` or `?session=` (checked before any body is read)."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    return token or request.headers.get("X-API-Key") or request.args.get("session") or None


def presented_token(request: flask.Request, session: str | None = None, form: bool = True) -> str | None:
    """The credential a request carries, if any: an API key, JWT or session id, from
    `Authorization: Bearer`, `X-API-Key`, or the existing clients' `session` field
    (query, `session` as the handler read it from its body, or, with `form`, the form)."""
    token = header_token(request) or session
    if not token and form and request.method == "POST" and service_context().authenticator.enabled:
        token = request.form.get("session")
    return token or None


def client_address(request: flask.Request) -> str:
    return "address:" + (request.remote_addr or "-")


def caller(request: flask.Request, session: str | None = None, form: bool = True) -> str:
    """The caller's tenant (AUTH_MODE), charged one request against its rate limit and
    every body byte read (`functions._body`). A failed authentication is charged to the
    client's address (RATE_LIMIT_AUTH_FAILURES_PER_MIN); past that budget, 429 before
    any credential is checked."""
    context = service_context()
    if context.authenticator.enabled:
        context.limiter.check(client_address(request), "failures")
    try:
        tenant = context.authenticator.tenant(presented_token(request, session, form))
    except Unauthorized:
        context.limiter.charge_kind(client_address(request), "failures")
        raise
    context.limiter.charge(tenant, requests=1)
    count_body(request).charge_to(lambda size: context.limiter.charge(tenant, size=size))
    return tenant


def open_endpoint(request: flask.Request) -> None:
    """An endpoint anyone may call: charged to the client's address (RATE_LIMIT_OPEN_PER_MIN)."""
    service_context().limiter.charge_kind(client_address(request), "open")


def small_body(request: flask.Request, limit: int = SMALL_BODY) -> bytes:
    """The body, at most `limit` bytes: a longer one is 413 REQUEST_TOO_LARGE, unread."""
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLarge(f"the body exceeds {limit // 1024} KiB")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise RequestTooLarge(f"the body exceeds {limit // 1024} KiB")
    return data


def workspace_args(request: flask.Request) -> dict[str, Any]:
    """The caller's tenant and the query parameters that name a workspace."""
    return {
        "tenant": caller(request),
        "path": request.args.get("workspace_path", ""),
        "logical_repo_id": request.args.get("logical_repo_id") or None,
    }


def positive_int(value: str, name: str) -> int | None:
    """A decimal ASCII integer >= 1, None when empty; `InvalidRequest` otherwise."""
    value = value.strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18 or int(value) < 1:
        raise InvalidRequest(f"{name} must be a positive integer")
    return int(value)


def _error(exc: BaseException) -> flask.Response:
    status, body, headers = error_response(exc)
    if status >= 500:
        log.error("request failed: %s", body["error"]["code"], exc_info=exc)
    return json_response(status, body, headers)


def require_method(request: flask.Request, *methods: str) -> None:
    """405 METHOD_NOT_ALLOWED, with `Allow: <methods>`, unless the request uses one of them."""
    if request.method not in methods:
        raise MethodNotAllowed(methods)


def same_host(origin: str, host: str) -> bool:
    """Whether `origin` names `host` (the Host header): same name, and its port, or the
    scheme's default when the Host names none (a proxy terminating TLS before us)."""
    try:
        page, here = urlsplit(origin), urlsplit("//" + host)
        page_port, here_port = page.port, here.port
    except ValueError:
        return False
    if page.scheme not in DEFAULT_PORTS or not page.hostname or page.hostname != here.hostname:
        return False
    return (page_port or DEFAULT_PORTS[page.scheme]) == (here_port or DEFAULT_PORTS[page.scheme])
