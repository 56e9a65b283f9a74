"""POST /api/v1/delta/upload-url — a presigned PUT for a bundle too large to post.

Takes the upload's fields (form or JSON, see `core.direct.json_fields`), plus an
optional `bundle_id`. A JSON body is read before authenticating, so it is small:
at most JSON_BODY_LIMIT bytes, nesting at most `core.models.MAX_JSON_DEPTH` levels.
"""

from __future__ import annotations

from collections.abc import Mapping

import flask

from core.context import service_context
from core.direct import json_fields
from core.models import parse_json
from functions._http import caller, handled, json_response, require_method, small_body
from functions.upload import parse_fields

JSON_BODY_LIMIT = 64 * 1024  # paths of 4 KiB, a session or token, and the other fields


@handled
def upload_url(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    fields: Mapping[str, str]
    if request.is_json:
        fields = json_fields(parse_json(small_body(request, JSON_BODY_LIMIT), "the JSON body"))
    else:
        fields = request.form
    tenant = caller(request, fields.get("session") if request.is_json else None)
    answer = service_context().direct.presign(parse_fields(fields, tenant), fields.get("bundle_id") or None)
    return json_response(200, answer)
