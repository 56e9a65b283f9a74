"""functions-framework targets: one per function, plus `service` serving all on one port.

    health, status, manifest, upload, upload_url, bundle_state   HTTP functions
    bundle_events        HTTP: RGW/AWS notification JSON and CloudEvents
    on_bundle_uploaded   CloudEvent function (CephSource, Eventarc)
    service              router: every HTTP function above on one port, by path

    functions-framework --source functions/main.py --target upload   # one function
    functions-framework --source functions/main.py --target service  # all of them
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flask  # noqa: E402
import functions_framework  # noqa: E402

from core.context import service_context  # noqa: E402
from core.errors import NotFound  # noqa: E402
from functions._http import handled  # noqa: E402
from functions.bundles import bundle_state as _bundle_state  # noqa: E402
from functions.events import bundle_events as _bundle_events  # noqa: E402
from functions.events import on_bundle_uploaded as _on_bundle_uploaded  # noqa: E402
from functions.health import health as _health  # noqa: E402
from functions.manifest import manifest as _manifest  # noqa: E402
from functions.status import status as _status  # noqa: E402
from functions.upload import upload as _upload  # noqa: E402
from functions.upload_url import upload_url as _upload_url  # noqa: E402

service_context()  # a bad setting stops start-up here, naming the variable

ROUTES = {
    "/health": _health,
    "/ready": _health,
    "/api/v1/delta/status": _status,
    "/api/v1/delta/upload": _upload,
    "/api/v1/delta/manifest": _manifest,
    "/api/v1/delta/upload-url": _upload_url,
    "/api/v1/delta/events": _bundle_events,
}
BUNDLES = "/api/v1/delta/bundles/"

health = functions_framework.http(_health)
status = functions_framework.http(_status)
upload = functions_framework.http(_upload)
manifest = functions_framework.http(_manifest)
upload_url = functions_framework.http(_upload_url)
bundle_state = functions_framework.http(_bundle_state)
bundle_events = functions_framework.http(_bundle_events)
on_bundle_uploaded = functions_framework.cloud_event(_on_bundle_uploaded)


@functions_framework.http
@handled
def service(request: flask.Request) -> flask.Response:
    """Router target: every function on one port, by path."""
    path = request.path.rstrip("/") or "/"
    handler = ROUTES.get(path) or (_bundle_state if path.startswith(BUNDLES) else None)
    if handler is None:
        raise NotFound("no such endpoint")
    return handler(request)
