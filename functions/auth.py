"""/auth/* — sessions and users as the existing clients speak them (core.auth.service).

    GET  /auth/status           {"enabled", "has_users", "session_ttl_seconds"}
    POST /auth/login            {"token", "client"?, "workspace"?} -> a session
    POST /auth/login/password   {"username", "password", "workspace"?} -> a session
    POST /auth/users            {"username", "password"}; X-Admin-Token once a user exists

Bodies are read only up to 16 KiB (413 REQUEST_TOO_LARGE beyond) before anything
is parsed or compared.
"""

from __future__ import annotations

import flask

from core.context import service_context
from core.errors import NotFound
from functions._http import READ_ONLY, handled, json_response, require_method, small_body


@handled
def auth_status(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    return json_response(200, service_context().auth.status())


@handled
def auth_login(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    return json_response(200, service_context().auth.login_token(small_body(request), _address(request)))


@handled
def auth_login_password(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    answer = service_context().auth.login_password(small_body(request), _address(request))
    return json_response(200, answer)


@handled
def auth_users(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    admin_token = request.headers.get("X-Admin-Token") or None
    return json_response(200, service_context().auth.create_user(small_body(request), admin_token))


@handled
def _unknown(request: flask.Request) -> flask.Response:
    raise NotFound("no such endpoint")


ROUTES = {
    "/auth/status": auth_status,
    "/auth/login": auth_login,
    "/auth/login/password": auth_login_password,
    "/auth/users": auth_users,
}


def auth(request: flask.Request) -> flask.Response:
    """The `auth` target: every /auth/* endpoint, by path."""
    return ROUTES.get(request.path.rstrip("/"), _unknown)(request)


def _address(request: flask.Request) -> str:
    """The connection's peer, never a header the client sets (core.auth.throttle)."""
    return request.remote_addr or "unknown"
