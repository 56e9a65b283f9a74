"""What every handler shares: JSON responses and the one error mapping."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from core.errors import BundleTooLarge, InvalidRequest, MethodNotAllowed, error_response

log = logging.getLogger("functions")
Handler = Callable[[flask.Request], flask.Response]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> flask.Response:
    response = flask.jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def handled(fn: Handler) -> Handler:
    """Turn any exception into the wire format's error envelope."""

    @functools.wraps(fn)
    def wrapper(request: flask.Request) -> flask.Response:
        try:
            return fn(request)
        except RequestEntityTooLarge:
            return _error(BundleTooLarge("request body exceeds MAX_BUNDLE_SIZE_MB"))
        except HTTPException as exc:
            return _error(InvalidRequest(f"malformed request: {exc.name}"))
        except Exception as exc:  # noqa: BLE001 - mapped to a 5xx envelope below
            return _error(exc)

    return wrapper


def _error(exc: BaseException) -> flask.Response:
    status, body, headers = error_response(exc)
    if status >= 500:
        log.error("request failed: %s", body["error"]["code"], exc_info=exc)
    return json_response(status, body, headers)


def require_method(request: flask.Request, *methods: str) -> None:
    if request.method not in methods:
        raise MethodNotAllowed(f"use {' or '.join(methods)} for this endpoint")
