"""GET /bridge/state?collection=… or ?workspace=…&repo_name=… — which collection serves a repo.

Called by the MCP bridge at start-up; authenticated like status. A 404 (nothing
known) or 401 makes the bridge fall back to its local config.
"""

from __future__ import annotations

import flask

from core.bridge import bridge_state as state_of
from core.context import service_context
from functions._http import READ_ONLY, caller, handled, json_response, require_method


@handled
def bridge_state(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    context = service_context()
    answer = state_of(
        context.store, context.settings, caller(request),
        collection=request.args.get("collection", ""),
        workspace=request.args.get("workspace", ""),
        repo_name=request.args.get("repo_name", ""),
        indexer=context.indexer,
        rebuild_of=lambda name: context.reindexing.read(name)[0],
    )
    return json_response(200, answer)
