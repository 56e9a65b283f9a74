"""GET /api/v1/delta/file?workspace_path=…&path=…[&start_line=…&end_line=…] — one stored file.

So that a search hit can be opened: the lines asked for, at most FILE_MAX_KB of
text, from the workspace's tree in storage (`core.views.stored_file`); 404
FILE_NOT_FOUND for a path the tree does not hold.
"""

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
def delta_file(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    context = service_context()
    answer = views.stored_file(
        context.store, context.settings, **workspace_args(request),
        file_path=request.args.get("path", ""),
        start_line=positive_int(request.args.get("start_line", ""), "start_line"),
        end_line=positive_int(request.args.get("end_line", ""), "end_line"),
    )
    return json_response(200, answer)
