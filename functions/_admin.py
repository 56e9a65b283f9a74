"""The one guard of the admin surface: the console (`/admin`) and every `/api/v1/admin/*`.

`admin_scope(request)` answers who is calling and over which tenants (`core.admin`
has the table), or raises: 401 without credentials, 403 ADMIN_LOOPBACK_ONLY for a
peer that is not loopback while auth is off, 403 CSRF_FAILED for a state-changing
request that a page of another origin sent, or that carries the console's cookies
without the form's token (`core.csrf`). Credentials, in order: `X-Admin-Token`
(CTXCE_AUTH_ADMIN_TOKEN), `Authorization: Bearer` / `X-API-Key` (an API key, JWT or
session, as everywhere), then the console's session cookie, which is only ever a
session (an API key is never read from a cookie). Its path is `/admin`, so a browser
sends it to the console alone.
"""

from __future__ import annotations

import hmac

import flask

from core import csrf
from core.admin import AdminScope, CsrfFailed, admin_token_scope, identity_scope, loopback_scope
from core.context import ServiceContext, service_context
from core.errors import Unauthorized
from core.names import is_tenant
from functions._http import READ_ONLY, SMALL_BODY, client_address, same_host

SESSION_COOKIE = "ctxce_admin_session"
BROWSER_COOKIE = "ctxce_admin_browser"
COOKIE_PATH = "/admin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE = (*READ_ONLY, "OPTIONS")


def admin_scope(request: flask.Request) -> AdminScope:
    """The caller's scope on the admin surface; charged to its rate limit as any request."""
    context = service_context()
    changes = request.method not in SAFE
    if changes:
        check_same_origin(request)
    if not context.authenticator.enabled:
        scope = loopback_scope(request.remote_addr)
        from_browser = request.cookies.get(BROWSER_COOKIE) is not None
    else:
        context.limiter.check(client_address(request), "failures")
        try:
            scope, from_browser = _authenticated(request, context)
        except Unauthorized:
            context.limiter.charge_kind(client_address(request), "failures")
            raise
        context.limiter.charge(scope.tenant, requests=1)
    if changes and from_browser:
        check_csrf(request)
    return scope


def _authenticated(request: flask.Request, context: ServiceContext) -> tuple[AdminScope, bool]:
    """(scope, whether the credential came from the console's cookie)."""
    admin_token = request.headers.get("X-Admin-Token")
    if admin_token is not None:
        configured = context.settings.ctxce_auth_admin_token
        if configured and hmac.compare_digest(admin_token.encode(), configured.encode()):
            return admin_token_scope(context.settings.auth_default_tenant), False
        raise Unauthorized("the X-Admin-Token is not the configured admin token")
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("X-API-Key")
    if token:
        return identity_scope(context.authenticator.identity(token)), False
    session = session_id(request)
    sessions = context.authenticator.sessions
    if session is None or sessions is None:
        raise Unauthorized("authentication required: sign in at /admin/login, or send a bearer token")
    identity = sessions.resolve(session)
    if identity is None or not is_tenant(identity.tenant):
        raise Unauthorized("this session has ended: sign in again")
    return identity_scope(identity), True


def session_id(request: flask.Request) -> str | None:
    """The console's session cookie, with auth on (with auth off there are no sessions)."""
    if not service_context().authenticator.enabled:
        return None
    return request.cookies.get(SESSION_COOKIE) or None


def check_same_origin(request: flask.Request) -> None:
    """A browser names the page that sent a request: `Origin` (every POST a modern browser
    sends), else `Referer`, and `Sec-Fetch-Site`. Any of them naming another origin, or
    `Origin: null` (a sandboxed or redirected page), is refused; a client that sends none
    (curl, the CLI) is not a browser and is judged by its credentials alone."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if (origin is not None and not same_host(origin, request.host)) or fetch_site in ("cross-site",
                                                                                      "same-site"):
        raise CsrfFailed("a page of another origin may not change anything here")


def csrf_token(request: flask.Request, browser_id: str) -> str:
    return csrf.token(service_context().csrf_secret, browser_id, session_id(request))


def check_csrf(request: flask.Request) -> None:
    """The form's token (or `X-CSRF-Token`) must be the one made for this browser and session."""
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.mimetype == "application/x-www-form-urlencoded":
        if request.max_content_length is None or request.max_content_length > SMALL_BODY:
            request.max_content_length = SMALL_BODY  # a console form is small; nothing read yet
        presented = request.form.get(CSRF_FIELD)
    if not csrf.valid(service_context().csrf_secret, request.cookies.get(BROWSER_COOKIE),
                      session_id(request), presented):
        raise CsrfFailed("the form's CSRF token is missing or not this session's: reload the page "
                         "and submit the form again")
