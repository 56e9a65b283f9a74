"""Direct-to-bucket uploads: hand out a presigned PUT, then process on the object's event.

Cloud Run refuses requests over 32 MiB, so large bundles bypass the service:

    1. POST upload-url   (authenticated) the upload's fields and a random token are
                         stored as an intent (workspaces/<ws>/intents/<id>.json); a
                         presigned PUT for incoming/<ws>/<id>/<token>.tar.gz is returned
    2. PUT               the client uploads the bundle straight to the bucket
    3. object-created    the event runs the same pipeline as an upload; the
                         incoming object and the intent are removed once the bundle
                         is committed or refused (refusals are recorded for the client)

The events endpoint is open, so an event is only a hint: the service acts on a key
only when an unexpired intent announced exactly that key (workspace, bundle id and
token). Anything else is "ignored" and logged — no record, deletion or state change
(docs/storage-layout.md, "Threat model"). Events arrive at least once and in any
number: a redelivery finds the intent gone or the object gone, and does nothing.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from core.config import Settings
from core.errors import (
    BundleTooLarge,
    DeltaError,
    InvalidRequest,
    NotFound,
    Unavailable,
    WorkspaceDeleting,
    disk_full_is_retryable,
)
from core.events import ObjectEvent
from core.keys import (
    BUNDLE_ID,
    incoming_key,
    intent_key,
    parse_incoming_key,
    refusal_key,
    result_key,
    workspace_key,
)
from core.models import UploadIntent, UploadRequest, UploadUrlBody, invalid_fields
from core.names import check_collection_name
from core.pipeline import Pipeline, report_refusal
from core.sequences import Sequences
from core.storage import ObjectNotFound, ObjectStore
from core.views import find_workspace

log = logging.getLogger(__name__)
Outcome = Literal["processed", "duplicate", "refused", "ignored"]
INTENT_GRACE_SECS = 24 * 3600  # events may lag a PUT begun just before its URL expired


def json_fields(body: Any) -> dict[str, str]:
    """upload-url's JSON body as the form fields it stands for; `InvalidRequest` for
    anything but an object whose known fields have their JSON types (see `UploadUrlBody`)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the JSON body must be an object of upload fields")
    try:
        return UploadUrlBody.model_validate(body).as_form()
    except ValidationError as exc:
        raise InvalidRequest(f"invalid JSON field(s): {invalid_fields(exc)} (text must be a JSON string; "
                             "sequence_number may be an integer, force a boolean)") from None


class DirectUploads:
    def __init__(self, settings: Settings, store: ObjectStore, pipeline: Pipeline) -> None:
        self.settings = settings
        self.store = store
        self.pipeline = pipeline

    def presign(self, request: UploadRequest, bundle_id: str | None) -> dict[str, Any]:
        bundle_id = bundle_id or str(uuid.uuid4())
        if not BUNDLE_ID.fullmatch(bundle_id):
            raise InvalidRequest("bundle_id must be 1-128 letters, digits, '.', '_' or '-'")
        if request.collection_name:  # refused now, not after the client has sent the bundle
            check_collection_name(request.collection_name)
        ws = workspace_key(request.tenant, request.workspace_path, request.logical_repo_id)
        expires = self.settings.direct_upload_expiry_secs
        now = time.time()
        earlier = self.intent(ws, bundle_id)  # a retried call keeps the key its first URL names
        token = earlier.token if earlier is not None and earlier.expires_at > now else secrets.token_hex(16)
        intent = UploadIntent(request=request, token=token, issued_at=now,
                              expires_at=now + expires + INTENT_GRACE_SECS)
        self.store.put(intent_key(ws, bundle_id), intent.model_dump_json().encode())
        url = self.store.presign_put(incoming_key(ws, bundle_id, token), expires)
        return {
            "success": True,
            "bundle_id": bundle_id,
            "workspace_key": ws,
            "upload_url": url,
            "method": "PUT",
            "expires_in": expires,
            "expires_at": (datetime.now(UTC) + timedelta(seconds=expires)).isoformat(),
            "max_bundle_size_mb": self.settings.max_bundle_size_mb,
        }

    def intent(self, ws: str, bundle_id: str) -> UploadIntent | None:
        """The intent upload-url stored for this bundle; None when there is none (or
        one in an older format, which no event can match)."""
        try:
            return UploadIntent.model_validate_json(self.store.get(intent_key(ws, bundle_id)).body)
        except (ObjectNotFound, ValidationError):
            return None

    def handle(self, event: ObjectEvent) -> Outcome:
        """Process one object event; raises only what a retry can cure."""
        relative = self.store.relative_key(event.bucket, event.key)
        if relative is None or event.kind != "created" or not relative.startswith("incoming/"):
            return "ignored"  # not an upload of ours: nothing to say
        parsed = parse_incoming_key(relative)
        if parsed is None:
            return _ignored(event, "not a key this service hands out")
        ws, bundle_id, token = parsed
        intent = self.intent(ws, bundle_id)
        if intent is None or not hmac.compare_digest(intent.token, token):
            return _ignored(event, "no upload URL was issued for this key")
        if intent.expires_at < time.time():
            return _ignored(event, "the upload URL for this key expired long ago")
        landed = self.store.head(relative)
        if landed is not None and landed.size > self.settings.max_bundle_bytes:
            self._refuse(ws, bundle_id, token, BundleTooLarge("bundle exceeds MAX_BUNDLE_SIZE_MB"))
            return "refused"
        with disk_full_is_retryable("scratch folder"):
            fd, name = tempfile.mkstemp(prefix="incoming-", suffix=".tar.gz", dir=self.store.scratch_dir)
        os.close(fd)
        raw = Path(name)
        try:
            try:
                self.store.download(relative, raw)
            except ObjectNotFound:
                self._finish(ws, bundle_id, token)  # an earlier delivery ended before the intent went
                return "duplicate"
            with raw.open("rb") as stream:
                result = self.pipeline.upload(intent.request, stream, expected_bundle_id=bundle_id)
        except Unavailable:
            raise
        except WorkspaceDeleting:  # the workspace, this upload included, is being deleted
            self._finish(ws, bundle_id, token)
            return _ignored(event, "the workspace is being deleted")
        except DeltaError as exc:
            if exc.http_status >= 500:
                raise
            self._refuse(ws, bundle_id, token, exc)
            return "refused"
        finally:
            raw.unlink(missing_ok=True)
        self._finish(ws, bundle_id, token)
        return "duplicate" if result.duplicate else "processed"

    def _refuse(self, ws: str, bundle_id: str, token: str, error: DeltaError) -> None:
        record = {"bundle_id": bundle_id, "refused_at": time.time(),
                  "error": {"code": error.code, "message": error.message}}
        self.store.put(refusal_key(ws, bundle_id), json.dumps(record).encode())
        self._finish(ws, bundle_id, token)
        error.bundle_id = bundle_id
        report_refusal(error)

    def _finish(self, ws: str, bundle_id: str, token: str) -> None:
        """The bundle is committed or refused: its upload and its intent go, object first
        (a crash between leaves the intent, and the redelivery ends as "duplicate")."""
        self.store.delete(incoming_key(ws, bundle_id, token))
        self.store.delete(intent_key(ws, bundle_id))

    def state(self, tenant: str, path: str, logical_repo_id: str | None,
              bundle_id: str) -> dict[str, Any]:
        """Where a bundle stands: committed (with its result), refused, processing,
        uploaded, or awaiting its upload."""
        if not BUNDLE_ID.fullmatch(bundle_id):
            raise NotFound("no such bundle")
        ws, head = find_workspace(self.store, self.settings, tenant, path, logical_repo_id)
        sequences = Sequences(self.store, ws, self.settings.lease_secs)
        result = sequences.committed_result(head, bundle_id)
        if result is not None:
            return {"bundle_id": bundle_id, "state": "committed", "result": result.model_dump(mode="json")}
        try:
            refused = json.loads(self.store.get(refusal_key(ws, bundle_id)).body)
            return {"bundle_id": bundle_id, "state": "refused", "error": refused["error"]}
        except ObjectNotFound:
            pass
        if head is not None and head.pending is not None and head.pending.bundle_id == bundle_id:
            return {"bundle_id": bundle_id, "state": "processing", "sequence_number": head.pending.sequence}
        intent = self.intent(ws, bundle_id)
        if intent is not None and intent.expires_at < time.time():
            return {"bundle_id": bundle_id, "state": "expired"}
        if intent is not None and self.store.head(incoming_key(ws, bundle_id, intent.token)) is not None:
            return {"bundle_id": bundle_id, "state": "uploaded"}
        if intent is not None:
            return {"bundle_id": bundle_id, "state": "awaiting_upload"}
        if self.store.head(result_key(ws, bundle_id)) is not None:
            return {"bundle_id": bundle_id, "state": "processing"}
        raise NotFound("no such bundle for this workspace")


def _ignored(event: ObjectEvent, reason: str) -> Outcome:
    """An event the service will not act on: logged (bounded), answered 2xx, nothing written."""
    log.warning("event ignored: %s", reason, extra={"event_key": event.key[:256],
                                                     "event_bucket": event.bucket[:64]})
    return "ignored"
