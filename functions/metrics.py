"""GET /metrics — Prometheus exposition of this process's counters."""

from __future__ import annotations

import flask

from core import metrics


def metrics_endpoint(request: flask.Request) -> flask.Response:
    body, content_type = metrics.exposition()
    return flask.Response(body, status=200, content_type=content_type)
