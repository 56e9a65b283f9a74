"""GET /api/v1/delta/bundles/<bundle_id>?workspace_path=… — where one bundle stands."""

from __future__ import annotations

import flask

from core.context import service_context
from functions._http import READ_ONLY, handled, json_response, require_method, workspace_args


@handled
def bundle_state(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    bundle_id = request.path.rstrip("/").rsplit("/", 1)[-1]
    answer = service_context().direct.state(bundle_id=bundle_id, **workspace_args(request))
    return json_response(200, answer)
