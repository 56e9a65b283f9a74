"""GET /api/v1/delta/status?workspace_path=… — the sequence record, from storage.

With auth on, a request that carries no credential at all gets the anonymous view
(`core.views.anonymous_status`: no tenant data), as the existing upload clients ask
before every upload; a credential, valid or not, is authenticated as everywhere.
"""

from __future__ import annotations

import flask

from core import views
from core.context import service_context
from functions._http import (
    READ_ONLY,
    handled,
    json_response,
    presented_token,
    require_method,
    workspace_args,
)


@handled
def status(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    context = service_context()
    if context.authenticator.enabled and presented_token(request) is None:
        context.limiter.charge("", requests=1)
        path = request.args.get("workspace_path", "")
        return json_response(200, views.anonymous_status(context.store, context.settings, path))
    counter = context.indexer.count_points if context.indexer is not None else None
    index = context.reindexing.index_status if context.indexer is not None else None
    answer = views.status(context.store, context.settings, **workspace_args(request),
                          count_points=counter, index_status=index)
    return json_response(200, answer)
