"""POST /api/v1/delta/upload-url — a presigned PUT for a bundle too large to post.

Takes the upload's fields (form or JSON, see `core.direct.json_fields`), plus an
optional `bundle_id`.
"""

from __future__ import annotations

import flask

from core.context import service_context
from core.direct import json_fields
from functions._http import caller, handled, json_response, require_method
from functions.upload import parse_fields


@handled
def upload_url(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    fields = json_fields(request.get_json(silent=True)) if request.is_json else request.form
    tenant = caller(request, fields.get("session") if request.is_json else None)
    answer = service_context().direct.presign(parse_fields(fields, tenant), fields.get("bundle_id") or None)
    return json_response(200, answer)
