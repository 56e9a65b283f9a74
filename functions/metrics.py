"""GET or HEAD /metrics — Prometheus exposition of this process's counters, or of every
worker's with PROMETHEUS_MULTIPROC_DIR (core.metrics).

With auth on, it needs a credential (any tenant's: the counters are the instance's,
labelled by route, status, outcome and error code, never by tenant, workspace or
path); with auth off it is open like everything else. Rate-limited per address."""

from __future__ import annotations

import flask

from core import metrics
from core.context import service_context
from functions._http import READ_ONLY, caller, handled, open_endpoint, require_method


@handled
def metrics_endpoint(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY)
    open_endpoint(request)
    if service_context().authenticator.enabled:
        caller(request, form=False)
    body, content_type = metrics.exposition()
    return flask.Response(body, status=200, content_type=content_type)
