"""GET /openapi.json — the OpenAPI description of every endpoint (core.openapi).

Open on purpose, with auth on too: it is the same document for every deployment
(the one in this repository), built from code, with no setting, tenant or
address in it. Rate-limited per address."""

from __future__ import annotations

import flask

from core.openapi import openapi_document
from functions._http import READ_ONLY, handled, json_response, open_endpoint, require_method


@handled
def openapi(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    open_endpoint(request)
    return json_response(200, openapi_document())
