"""GET or HEAD /health (liveness) and /ready or /health?ready=1 (readiness)."""

from __future__ import annotations

import flask

from core.context import service_context
from core.health import health as health_answer
from functions._http import READ_ONLY, handled, json_response, require_method


@handled
def health(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    context = service_context()
    ready = request.path.rstrip("/").endswith("/ready")
    ready = ready or request.args.get("ready", "").lower() in ("1", "true", "yes")
    status, body = health_answer(context.settings, context.store, context.qdrant, ready)
    return json_response(status, body)
