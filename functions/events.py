"""Object-created events: a functions-framework CloudEvent target, and an HTTP one.

`on_bundle_uploaded` takes CloudEvents (Knative CephSource, Eventarc). RGW's own
HTTP push and AWS notifications post plain JSON, so `bundle_events` (served by
the router at POST /api/v1/delta/events) takes plain S3-record JSON and
CloudEvents in binary and structured mode alike. Both answer 2xx once every
bundle is processed or permanently refused; a transient failure is an error
(5xx), so the platform delivers the event again. An event that is not an
object-created one answers 400 on the HTTP target; the CloudEvent target
acknowledges it with a warning, since a platform redelivers what a function
fails on (and functions-framework turns every exception into a 500).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import flask
from cloudevents.http import from_http

from core.context import service_context
from core.errors import InvalidRequest
from core.events import ObjectEvent, UnknownEvent, from_cloud_event, from_notification
from functions._http import handled, json_response, open_endpoint, require_method, small_body

log = logging.getLogger("functions")


def on_bundle_uploaded(cloud_event: Any) -> None:
    try:
        events = from_cloud_event(cloud_event["type"], cloud_event.get("subject"), cloud_event.data)
    except UnknownEvent as exc:
        log.warning("CloudEvent %s ignored: %s", cloud_event["id"], exc, extra={
            "event_type": str(cloud_event["type"])[:200], "source": str(cloud_event["source"])[:200]})
        return
    _process(events)


@handled
def bundle_events(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    open_endpoint(request)
    body = small_body(request, service_context().settings.events_max_body_kb * 1024)
    is_cloud_event = request.headers.get("ce-type") is not None or (
        request.mimetype == "application/cloudevents+json")
    if is_cloud_event:
        try:
            event = from_http(dict(request.headers), body)
        except Exception:  # noqa: BLE001 - the SDK raises assorted errors on malformed input
            raise UnknownEvent("not a valid CloudEvent") from None
        events = from_cloud_event(event["type"], event.get("subject"), event.data)
    else:
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            raise InvalidRequest("the event body is not JSON") from None
        events = from_notification(payload)
    return json_response(200, {"success": True, "outcomes": _process(events)})


def _process(events: list[ObjectEvent]) -> list[dict[str, str]]:
    direct = service_context().direct
    return [{"key": e.key, "outcome": direct.handle(e)} for e in events]
