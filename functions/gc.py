"""POST /api/v1/admin/gc (and the `gc_sweep` target): one retention sweep, answered with what it removed.

Run on a schedule (a Knative PingSource, a Cloud Scheduler job: infra/README.md) or by an
operator. The sweep acts on every tenant, so the caller must be the admin surface's
admin (`functions._admin.admin_scope`: a loopback client with auth off, an admin user's
session or CTXCE_AUTH_ADMIN_TOKEN with auth on); anyone else is 403 ADMIN_ONLY. The
caller is admitted before the body is read, and the body, which a scheduler may send
(a PingSource's event data), is read only up to 16 KiB and ignored.

    200 {"success": true, "workspaces", "sequences_removed", "objects_removed", "bytes_removed",
         "removed": {<kind>: {"objects", "bytes"}}, "unfinished_workspaces", "failed_workspaces",
         "reindex": [<jobs continued>], "duration_ms"}

The same run continues the reindex jobs whose instance died (`core.reindex`: their
lease ran out) and drops the collections finished jobs replaced, within
REINDEX_RESUME_SECS of the request.
"""

from __future__ import annotations

import time

import flask

from core.context import service_context
from core.errors import Forbidden
from core.retention import Retention
from functions._admin import admin_scope
from functions._http import handled, json_response, require_method, small_body

REINDEX_RESUME_SECS = 120.0  # of a scheduled run spent continuing reindex jobs (each resumes later)


@handled
def gc(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    if not admin_scope(request).all_tenants:
        raise Forbidden("the retention sweep acts on every tenant: only an admin may run it",
                        code="ADMIN_ONLY")
    small_body(request)
    context = service_context()
    started = time.monotonic()
    summary = Retention(context.settings, context.store).sweep()
    resumed = []
    if context.indexer is not None:
        resumed = [job.public() for job in context.reindexing.resume(REINDEX_RESUME_SECS)]
    return json_response(200, {"success": True, **summary.as_dict(), "reindex": resumed,
                               "duration_ms": round((time.monotonic() - started) * 1000, 1)})
