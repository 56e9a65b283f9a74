"""POST /api/v1/delta/upload-url — a presigned PUT for a bundle too large to post.

Takes the upload's fields (form or JSON), plus an optional `bundle_id`.
"""

from __future__ import annotations

import flask
from werkzeug.datastructures import MultiDict

from core.context import service_context
from core.errors import InvalidRequest
from functions._http import caller, handled, json_response, require_method
from functions.upload import parse_fields


@handled
def upload_url(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not all(
            isinstance(v, str | int | bool) or v is None for v in body.values()
        ):
            raise InvalidRequest("the JSON body must be an object of upload fields (strings)")
        fields: MultiDict[str, str] = MultiDict({k: str(v) for k, v in body.items() if v is not None})
    else:
        fields = MultiDict(request.form)
    tenant = caller(request)
    answer = service_context().direct.presign(parse_fields(fields, tenant), fields.get("bundle_id") or None)
    return json_response(200, answer)
