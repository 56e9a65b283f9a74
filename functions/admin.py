"""/admin — the admin console: server-rendered pages over `core.console` (README "Admin console").

    GET  /admin                       tenants, workspaces, collections, reindex jobs
    GET  /admin/login, POST           sign-in with a user name and password (auth on)
    POST /admin/logout                sign-out: the session ends
    POST /admin/actions/<action>      reindex, abort, delete-workspace, delete-collection
    GET  /admin/console.css           the stylesheet (the CSP allows no inline style)

Every page is checked by `functions._admin.admin_scope`, every POST by its CSRF token
as well. Longer than a handler usually is: one module holds the console's few routes.
"""

from __future__ import annotations

import json
from typing import Any

import flask

from core import console
from core.context import ServiceContext, service_context
from core.errors import DeltaError, Forbidden, InvalidRequest, NotFound, Unauthorized
from core.names import is_tenant
from functions._admin import admin_scope, check_csrf, check_same_origin, session_id
from functions._console import error_page, page, redirect, sign_in, sign_out, stylesheet
from functions._http import READ_ONLY, SMALL_BODY, handled, open_endpoint, require_method

ACTIONS = ("reindex", "abort", "delete-workspace", "delete-collection")


@handled
def admin(request: flask.Request) -> flask.Response:
    """The `admin` target and the service's /admin paths; errors answer as pages."""
    path = request.path.rstrip("/") or "/"
    if path == "/":  # the admin target's root
        return redirect("/admin")
    sub = path[len("/admin"):] or "/"
    if path != "/admin" and not path.startswith("/admin/"):
        sub = "/unknown"
    if sub == "/console.css":
        return stylesheet()
    try:
        if sub == "/login":
            return _login(request)
        if sub == "/logout":
            return _logout(request)
        if sub.startswith("/actions/"):
            return _action(request, sub[len("/actions/"):])
        if sub == "/":
            return _dashboard(request)
        raise NotFound("no such page")
    except Unauthorized as exc:
        if request.method not in READ_ONLY:
            return error_page(request, exc)
        response = redirect("/admin/login")
        sign_out(response)
        return response
    except DeltaError as exc:
        return error_page(request, exc)


def _dashboard(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    scope = admin_scope(request)
    context = service_context()
    digest = request.args.get("tenant") or None
    tenants, cut = console.tenants(context.store, scope)
    counter = context.indexer.count_points if context.indexer is not None else None
    workspaces = console.workspace_page(context.store, context.settings.lease_secs, scope, digest,
                                        request.args.get("cursor", ""), counter)
    named = {row.digest: row.tenant for row in tenants}
    of = scope.tenant if not scope.all_tenants else (named.get(digest) if digest else None)
    reindexing, deletion = _feature(context, "reindexing"), _feature(context, "deletion")
    collections, jobs, index_note = [], [], None
    if reindexing is not None and (digest is None or of is not None):
        try:
            collections, jobs = reindexing.collections(of), reindexing.jobs(of)
        except DeltaError as exc:  # indexing off, Qdrant down: the rest of the page still answers
            index_note = exc.message
    return page(request, "dashboard.html", scope=scope, tenants=tenants, tenants_cut=cut, digest=digest,
                workspaces=workspaces, reindexing=reindexing is not None, deletion=deletion is not None,
                collections=collections, jobs=jobs, index_note=index_note,
                done=_done(request.args.get("done", "")), signed_in=session_id(request) is not None)


def _action(request: flask.Request, name: str) -> flask.Response:
    require_method(request, "POST")
    request.max_content_length = SMALL_BODY
    scope = admin_scope(request)
    check_csrf(request)  # also without any cookie: a console form always carries its token
    if name not in ACTIONS:
        raise NotFound("no such action")
    form = request.form
    tenant = form.get("tenant", scope.tenant)
    if not scope.may_act_on(tenant) or (tenant != scope.tenant and not is_tenant(tenant)):
        raise Forbidden("this tenant is not yours to change")
    if name.startswith("delete-") and form.get("confirm") != "yes":
        fields = {k: v for k, v in form.items() if k not in ("csrf_token", "confirm")}
        return page(request, "confirm.html", action=name, fields=fields)
    context = service_context()
    collection = form.get("collection_name", "")
    feature = _feature(context, "deletion" if name.startswith("delete-") else "reindexing")
    if feature is None:
        raise NotFound("this action is not available in this build", code="NOT_AVAILABLE")
    if name == "reindex":
        feature.start(tenant, collection_name=collection)
    elif name == "abort":
        feature.abort(tenant, collection)
    elif name == "delete-collection":
        feature.delete_collection(tenant, collection)
    else:
        feature.delete_workspace(tenant, form.get("workspace_path", ""), form.get("logical_repo_id") or None)
    back = form.get("back_tenant", "")
    return redirect(f"/admin?done={name}" + (f"&tenant={back}" if _is_digest(back) else ""))


def _login(request: flask.Request) -> flask.Response:
    open_endpoint(request)  # anyone may ask for the sign-in page: charged to the address
    context = service_context()
    if context.auth.sessions is None:  # auth off: loopback only, nobody signs in
        return redirect("/admin")
    if request.method in READ_ONLY:
        return page(request, "login.html", error=None)
    require_method(request, "POST", *READ_ONLY)
    request.max_content_length = SMALL_BODY
    check_same_origin(request)
    check_csrf(request)
    body = json.dumps({"username": request.form.get("username", ""), "client": "admin-console",
                       "password": request.form.get("password", "")}).encode()
    try:
        answer = context.auth.login_password(body, request.remote_addr or "unknown")
    except (Unauthorized, InvalidRequest):
        return page(request, "login.html", 401, error="Invalid user name or password.")
    response = redirect("/admin")
    sign_in(request, response, answer["session_id"], context.settings.ctxce_auth_session_ttl_seconds)
    return response


def _logout(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    request.max_content_length = SMALL_BODY
    check_same_origin(request)
    check_csrf(request)
    context = service_context()
    session = session_id(request)
    if session is not None and context.authenticator.sessions is not None:
        context.authenticator.sessions.end(session)
    response = redirect("/admin/login")
    sign_out(response)
    return response


def _feature(context: ServiceContext, name: str) -> Any:
    """`context.reindexing` / `context.deletion`, or None in a build without them."""
    return getattr(context, name, None)


def _done(action: str) -> str:
    """The action just done, for the notice: one of ours, never text from the URL."""
    return action if action in ACTIONS else ""


def _is_digest(value: str) -> bool:
    return len(value) == 16 and all(c in "0123456789abcdef" for c in value)
