"""GET /api/v1/delta/manifest?workspace_path=…&limit=…&cursor=… — the server's files."""

from __future__ import annotations

import flask

from core import views
from core.context import service_context
from core.errors import InvalidRequest
from functions._http import handled, json_response, require_method


@handled
def manifest(request: flask.Request) -> flask.Response:
    require_method(request, "GET")
    context = service_context()
    limit = request.args.get("limit", "")
    if limit and not limit.isdigit():
        raise InvalidRequest("limit must be a positive integer")
    answer = views.manifest(
        context.store,
        context.settings,
        tenant="",
        path=request.args.get("workspace_path", ""),
        logical_repo_id=request.args.get("logical_repo_id") or None,
        cursor=request.args.get("cursor", ""),
        limit=int(limit) if limit else None,
    )
    return json_response(200, answer)
