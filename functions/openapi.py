"""GET /openapi.json — the OpenAPI description of every endpoint."""

from __future__ import annotations

import flask

from core.openapi import openapi_document
from functions._http import json_response


def openapi(request: flask.Request) -> flask.Response:
    return json_response(200, openapi_document())
