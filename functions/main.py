"""functions-framework targets: one per function, plus `service` serving all on one port.

    health, status, manifest, upload, upload_url, bundle_state, bridge_state   HTTP functions
    search, file         HTTP: /api/v1/search, /api/v1/delta/file
    deletion             HTTP: DELETE /api/v1/delta/workspace, DELETE /api/v1/delta/collection
    mcp                  HTTP: an MCP server (streamable HTTP, stateless) at any path; /mcp on service
    auth                 HTTP: /auth/status, /auth/login, /auth/login/password, /auth/users
    admin                HTTP: the admin console, /admin and its sub-paths, and the admin
                         API /api/v1/admin/reindex[/abort] and /api/v1/admin/gc
    bundle_events        HTTP: RGW/AWS notification JSON and CloudEvents
    gc_sweep             HTTP: one retention sweep (scheduled); /api/v1/admin/gc on service
                         (not `gc`: functions-framework names its Flask app after the target,
                         and Flask cannot find a root path for the built-in module of that name)
    on_bundle_uploaded   CloudEvent function (CephSource, Eventarc)
    service              router: every HTTP function above on one port, by path

    functions-framework --source functions/main.py --target upload   # one function
    functions-framework --source functions/main.py --target service  # all of them
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flask  # noqa: E402
import functions_framework  # noqa: E402

from core.context import service_context  # noqa: E402
from core.errors import NotFound  # noqa: E402
from functions._http import handled  # noqa: E402
from functions.admin import admin as _admin  # noqa: E402
from functions.admin_api import reindex as _reindex  # noqa: E402
from functions.auth import auth as _auth  # noqa: E402
from functions.auth import auth_login as _auth_login  # noqa: E402
from functions.auth import auth_login_password as _auth_login_password  # noqa: E402
from functions.auth import auth_status as _auth_status  # noqa: E402
from functions.auth import auth_users as _auth_users  # noqa: E402
from functions.bridge_state import bridge_state as _bridge_state  # noqa: E402
from functions.bundles import bundle_state as _bundle_state  # noqa: E402
from functions.events import bundle_events as _bundle_events  # noqa: E402
from functions.events import on_bundle_uploaded as _on_bundle_uploaded  # noqa: E402
from functions.file import delta_file as _delta_file  # noqa: E402
from functions.gc import gc as _gc  # noqa: E402
from functions.health import health as _health  # noqa: E402
from functions.manifest import manifest as _manifest  # noqa: E402
from functions.mcp import mcp as _mcp  # noqa: E402
from functions.metrics import metrics_endpoint as _metrics  # noqa: E402
from functions.openapi import openapi as _openapi  # noqa: E402
from functions.search import search as _search  # noqa: E402
from functions.status import status as _status  # noqa: E402
from functions.upload import upload as _upload  # noqa: E402
from functions.upload_url import upload_url as _upload_url  # noqa: E402
from functions.workspace import delete_collection as _delete_collection  # noqa: E402
from functions.workspace import delete_workspace as _delete_workspace  # noqa: E402
from functions.workspace import deletion as _deletion  # noqa: E402

service_context()  # a bad setting stops start-up here, naming the variable

ROUTES = {
    "/health": _health,
    "/ready": _health,
    "/api/v1/delta/status": _status,
    "/api/v1/delta/upload": _upload,
    "/api/v1/delta/manifest": _manifest,
    "/api/v1/delta/upload-url": _upload_url,
    "/api/v1/delta/events": _bundle_events,
    "/api/v1/delta/file": _delta_file,
    "/api/v1/search": _search,
    "/bridge/state": _bridge_state,
    "/mcp": _mcp,
    "/metrics": _metrics,
    "/openapi.json": _openapi,
    "/auth/status": _auth_status,
    "/auth/login": _auth_login,
    "/auth/login/password": _auth_login_password,
    "/auth/users": _auth_users,
    "/api/v1/admin/reindex": _reindex,
    "/api/v1/admin/reindex/abort": _reindex,
    "/api/v1/admin/gc": _gc,
    # deletion (functions/workspace.py)
    "/api/v1/delta/workspace": _delete_workspace,
    "/api/v1/delta/collection": _delete_collection,
}
BUNDLES = "/api/v1/delta/bundles/"
ADMIN = "/admin"
GC = "/api/v1/admin/gc"



Handler = Callable[[flask.Request], flask.Response]


def _with_probes(handler: Handler) -> Handler:
    """A single-function target still answers /health and /ready, for platform probes."""

    @functools.wraps(handler)
    def target(request: flask.Request) -> flask.Response:
        if request.path.rstrip("/") in ("/health", "/ready"):
            return _health(request)
        return handler(request)

    return target


health = functions_framework.http(_health)
status = functions_framework.http(_with_probes(_status))
upload = functions_framework.http(_with_probes(_upload))
manifest = functions_framework.http(_with_probes(_manifest))
upload_url = functions_framework.http(_with_probes(_upload_url))
bundle_state = functions_framework.http(_with_probes(_bundle_state))
bundle_events = functions_framework.http(_with_probes(_bundle_events))
auth = functions_framework.http(_with_probes(_auth))
bridge_state = functions_framework.http(_with_probes(_bridge_state))
search = functions_framework.http(_with_probes(_search))
file = functions_framework.http(_with_probes(_delta_file))
mcp = functions_framework.http(_with_probes(_mcp))
gc_sweep = functions_framework.http(_with_probes(_gc))


def _admin_surface(request: flask.Request) -> flask.Response:
    """The admin target: the console, and the admin API it acts through."""
    path = request.path.rstrip("/")
    if path == GC:
        return _gc(request)
    return _reindex(request) if path.startswith("/api/v1/admin/reindex") else _admin(request)


admin = functions_framework.http(_with_probes(_admin_surface))
deletion = functions_framework.http(_with_probes(_deletion))
on_bundle_uploaded = functions_framework.cloud_event(_on_bundle_uploaded)


@handled
def _not_found(request: flask.Request) -> flask.Response:
    raise NotFound("no such endpoint")


@functions_framework.http
def service(request: flask.Request) -> flask.Response:
    """Router target: every function on one port, by path (each handles its own errors)."""
    path = request.path.rstrip("/") or "/"
    handler = ROUTES.get(path) or (_bundle_state if path.startswith(BUNDLES) else _not_found)
    if path == ADMIN or path.startswith(ADMIN + "/"):
        handler = _admin
    return handler(request)
