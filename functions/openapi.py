"""GET /openapi.json — the OpenAPI description of every endpoint (core.openapi)."""

from __future__ import annotations

import flask

from core.openapi import openapi_document
from functions._http import READ_ONLY, handled, json_response, require_method


@handled
def openapi(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    return json_response(200, openapi_document())
