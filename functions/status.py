"""GET /api/v1/delta/status?workspace_path=… — the sequence record, from storage."""

from __future__ import annotations

import flask

from core import views
from core.context import service_context
from functions._http import READ_ONLY, handled, json_response, require_method, workspace_args


@handled
def status(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    context = service_context()
    counter = context.indexer.count_points if context.indexer is not None else None
    answer = views.status(context.store, context.settings, **workspace_args(request),
                          count_points=counter)
    return json_response(200, answer)
