"""GET or POST /api/v1/search — hybrid search over the caller's workspaces (`core.search`).

GET takes the parameters in the query string; POST takes the same names as a JSON
object (at most JSON_MAX_BODY_KB). A credential in a header is checked before a
body is read; without one, a `session` field of the body is the credential, as the
existing clients send it.
"""

from __future__ import annotations

from typing import Any

import flask

from core.context import service_context
from core.errors import InvalidRequest
from core.models import parse_json
from core.search import parse_search
from functions._http import (
    READ_ONLY,
    caller,
    handled,
    header_token,
    json_response,
    require_method,
    small_body,
)


@handled
def search(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY, "POST")
    context = service_context()
    fields: dict[str, Any]
    if request.method == "POST":
        limit = context.settings.json_max_body_kb * 1024
        tenant = caller(request) if header_token(request) else None
        request.max_content_length = limit
        body = parse_json(small_body(request, limit), "the JSON body")
        if not isinstance(body, dict):
            raise InvalidRequest("the JSON body must be an object of search parameters")
        session = body.pop("session", None)
        tenant = tenant or caller(request, session if isinstance(session, str) else None, form=False)
        fields = body
    else:
        tenant = caller(request)
        fields = {name: value for name, value in request.args.items() if name != "session"}
    return json_response(200, context.searcher.search(tenant, parse_search(fields)))
