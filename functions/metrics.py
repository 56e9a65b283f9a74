"""GET or HEAD /metrics — Prometheus exposition of this process's counters, or of every
worker's with PROMETHEUS_MULTIPROC_DIR (core.metrics)."""

from __future__ import annotations

import flask

from core import metrics
from functions._http import READ_ONLY, handled, require_method


@handled
def metrics_endpoint(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    body, content_type = metrics.exposition()
    return flask.Response(body, status=200, content_type=content_type)
