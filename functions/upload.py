"""POST /api/v1/delta/upload — multipart form of the wire format; synchronous."""

from __future__ import annotations

from collections.abc import Mapping

import flask
from pydantic import ValidationError

from core.context import service_context
from core.errors import DeltaError, InvalidRequest
from core.models import UploadRequest, invalid_fields
from core.pipeline import report_refusal
from functions._http import caller, handled, json_response, positive_int, require_method

FORM_OVERHEAD = 1024 * 1024
TRUE = {"true", "1", "yes", "y", "on"}
FALSE = {"false", "0", "no", "n", "off", ""}


@handled
def upload(request: flask.Request) -> flask.Response:
    require_method(request, "POST")
    context = service_context()
    request.max_content_length = context.settings.max_bundle_bytes + FORM_OVERHEAD
    tenant = caller(request)
    bundle = request.files.get("bundle")
    if bundle is None:
        raise InvalidRequest("the multipart field 'bundle' (the .tar.gz file) is required")
    try:
        result = context.pipeline.upload(parse_fields(request.form, tenant), bundle.stream)
    except DeltaError as exc:
        report_refusal(exc)
        raise
    return json_response(200, result.model_dump(mode="json"))


def parse_fields(form: Mapping[str, str], tenant: str) -> UploadRequest:
    """The wire format's upload fields (also taken by upload-url)."""
    sequence = positive_int(form.get("sequence_number", ""), "sequence_number")
    try:
        return UploadRequest(
            workspace_path=form.get("workspace_path", ""),
            collection_name=form.get("collection_name") or None,
            sequence_number=sequence,
            force=_flag(form.get("force", ""), "force"),
            source_path=form.get("source_path") or None,
            logical_repo_id=form.get("logical_repo_id") or None,
            tenant=tenant,
        )
    except ValidationError as exc:
        raise InvalidRequest(f"invalid form field(s): {invalid_fields(exc)}") from None


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise InvalidRequest(f"{name} must be true or false")
