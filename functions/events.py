"""Object-created events: a functions-framework CloudEvent target, and an HTTP one.

`on_bundle_uploaded` takes CloudEvents (Knative CephSource, Eventarc). RGW's own
HTTP push and AWS notifications post plain JSON, so `bundle_events` (served by
the router at POST /api/v1/delta/events) takes plain S3-record JSON and
CloudEvents in binary and structured mode alike. Both answer 2xx once every
bundle is processed, permanently refused or ignored (no upload URL announced
its key); a transient failure is an error (5xx), so the platform delivers the
event again. The HTTP target is open, so it is bounded: EVENTS_MAX_BODY_KB,
MAX_EVENT_RECORDS objects, EVENT_RATE_LIMIT_PER_MIN objects a minute per source
address. An event that is not an object-created one answers 400 there; the
CloudEvent target acknowledges it with a warning, since a platform redelivers
what a function fails on (and functions-framework turns every exception into a 500).
"""

from __future__ import annotations

import logging
from typing import Any

import flask
from cloudevents.http import from_http

from core.context import service_context
from core.errors import TooManyRecords
from core.events import ObjectEvent, UnknownEvent, from_cloud_event, from_notification
from core.models import parse_json
from functions._http import handled, json_response, open_endpoint, require_method, small_body

log = logging.getLogger("functions")


def on_bundle_uploaded(cloud_event: Any) -> None:
    try:
        events = from_cloud_event(cloud_event["type"], cloud_event.get("subject"), cloud_event.data)
    except (UnknownEvent, TooManyRecords) as exc:
        log.warning("CloudEvent %s ignored: %s", str(cloud_event["id"])[:128], exc, extra={
            "event_type": str(cloud_event["type"])[:128], "source": str(cloud_event["source"])[:128]})
        return
    _process(events)


@handled
def bundle_events(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    open_endpoint(request)
    limiter, source = service_context().event_limiter, f"addr:{request.remote_addr or 'unknown'}"
    limiter.charge(source, requests=1)
    body = small_body(request, service_context().settings.events_max_body_kb * 1024)
    payload = parse_json(body or b"null", "the event body")
    if request.headers.get("ce-type") is not None or request.mimetype == "application/cloudevents+json":
        try:
            event = from_http(dict(request.headers), body)
        except Exception:  # noqa: BLE001 - the SDK raises assorted errors on malformed input
            raise UnknownEvent("not a valid CloudEvent") from None
        events = from_cloud_event(event["type"], event.get("subject"), event.data)
    else:
        events = from_notification(payload)
    if len(events) > 1:
        limiter.charge(source, requests=len(events) - 1)
    return json_response(200, {"success": True, "outcomes": _process(events)})


def _process(events: list[ObjectEvent]) -> list[dict[str, str]]:
    direct = service_context().direct
    return [{"key": e.key[:1024], "outcome": direct.handle(e)} for e in events]  # S3 keys: <= 1024
