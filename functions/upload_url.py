"""POST /api/v1/delta/upload-url — a presigned PUT for a bundle too large to post.

Takes the upload's fields (form or JSON, see `core.direct.json_fields`), plus an
optional `bundle_id`. A JSON body is read before authenticating, so it is small:
at most JSON_MAX_BODY_KB, nesting at most `core.models.MAX_JSON_DEPTH` levels.
"""

from __future__ import annotations

from collections.abc import Mapping

import flask

from core.context import service_context
from core.direct import json_fields
from core.models import parse_json
from functions._http import caller, handled, header_token, json_response, require_method, small_body
from functions.upload import parse_fields


@handled
def upload_url(request: flask.Request) -> flask.Response:
    """A credential in a header is checked before the body is read; the body (JSON or
    form) is at most JSON_MAX_BODY_KB either way."""
    require_method(request, "POST")
    limit = service_context().settings.json_max_body_kb * 1024
    tenant = caller(request) if header_token(request) else None
    request.max_content_length = limit
    fields: Mapping[str, str]
    if request.is_json:
        fields = json_fields(parse_json(small_body(request, limit), "the JSON body"))
    else:
        fields = request.form
    tenant = tenant or caller(request, fields.get("session"))
    answer = service_context().direct.presign(parse_fields(fields, tenant), fields.get("bundle_id") or None)
    return json_response(200, answer)
