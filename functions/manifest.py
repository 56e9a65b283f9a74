"""GET /api/v1/delta/manifest?workspace_path=…&limit=…&cursor=… — the server's files."""

from __future__ import annotations

import flask

from core import views
from core.context import service_context
from functions._http import (
    READ_ONLY,
    handled,
    json_response,
    positive_int,
    require_method,
    workspace_args,
)


@handled
def manifest(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    context = service_context()
    answer = views.manifest(
        context.store,
        context.settings,
        **workspace_args(request),
        cursor=request.args.get("cursor", ""),
        limit=positive_int(request.args.get("limit", ""), "limit"),
    )
    return json_response(200, answer)
