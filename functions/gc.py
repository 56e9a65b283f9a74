"""POST /api/v1/admin/gc (and the `gc_sweep` target): one retention sweep, answered with what it removed.

Run on a schedule (a Knative PingSource, a Cloud Scheduler job: infra/README.md) or by an
operator. The caller is admitted before the body is read (`core.auth.admin`), and the body,
which a scheduler may send (a PingSource's event data), is read only up to 16 KiB and ignored.

    200 {"success": true, "workspaces", "sequences_removed", "objects_removed", "bytes_removed",
         "removed": {<kind>: {"objects", "bytes"}}, "unfinished_workspaces", "failed_workspaces",
         "duration_ms"}
"""

from __future__ import annotations

import time

import flask

from core.auth.admin import admit_admin
from core.context import service_context
from core.errors import Forbidden, Unauthorized
from core.retention import Retention
from functions._http import client_address, handled, header_token, json_response, require_method, small_body


@handled
def gc(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    context = service_context()
    address = client_address(request)
    if context.authenticator.enabled:
        context.limiter.check(address, "failures")
    try:
        admit_admin(context.settings, context.authenticator,
                    request.headers.get("X-Admin-Token") or header_token(request), request.remote_addr)
    except (Unauthorized, Forbidden):
        context.limiter.charge_kind(address, "failures")
        raise
    small_body(request)
    started = time.monotonic()
    summary = Retention(context.settings, context.store).sweep()
    return json_response(200, {"success": True, **summary.as_dict(),
                               "duration_ms": round((time.monotonic() - started) * 1000, 1)})
