"""One JSON log formatter, in the shape Cloud Run and Knative log collectors read.

Every line has `severity`, `message` and `time`; fields bound for the current
request (trace id, workspace, bundle id) are added to every line logged while
it runs, and `extra=` fields of a call are added to that line. Debug level adds
detail; file contents, tokens and keys are never logged.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_bound: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_fields", default=None)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` to every line logged in this context; removed on exit."""
    token = _bound.set({**(_bound.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def trace_fields(traceparent: str | None, cloud_trace: str | None, project: str | None) -> dict[str, str]:
    """The trace id of W3C `traceparent` or `X-Cloud-Trace-Context`, as Cloud Logging wants it."""
    trace = span = None
    if traceparent:
        parts = traceparent.split("-")
        if len(parts) >= 3 and len(parts[1]) == 32:
            trace, span = parts[1], parts[2]
    elif cloud_trace:
        trace, _, rest = cloud_trace.partition("/")
        span = rest.split(";", 1)[0] or None
    if not trace:
        return {}
    key = f"projects/{project}/traces/{trace}" if project else trace
    fields = {"logging.googleapis.com/trace": key}
    if span:
        fields["logging.googleapis.com/spanId"] = span
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        entry.update(_bound.get() or {})
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """Route the root logger through one JSON handler on stderr (idempotent)."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(_LEVELS[level])
