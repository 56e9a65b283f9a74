"""POST /api/v1/delta/upload — multipart form of the wire format; synchronous."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import flask
from pydantic import ValidationError

from core.context import service_context
from core.errors import DeltaError, InvalidRequest
from core.models import UploadRequest, invalid_fields
from core.pipeline import report_refusal
from functions._http import caller, handled, header_token, json_response, positive_int, require_method
from functions._multipart import read_upload_form

TRUE = {"true", "1", "yes", "y", "on"}
FALSE = {"false", "0", "no", "n", "off", ""}


@handled
def upload(request: flask.Request) -> flask.Response:
    """A credential in a header is checked before the body is read; one in the
    `session` field as soon as that field has arrived (`functions._multipart`)."""
    require_method(request, "POST")
    context = service_context()
    tenant = caller(request) if header_token(request) or not context.authenticator.enabled else None

    def on_session(session: str) -> None:
        nonlocal tenant
        tenant = tenant or caller(request, session, form=False)

    form = read_upload_form(request, context.settings.max_bundle_bytes, str(context.store.scratch_dir),
                            on_session)
    with contextlib.ExitStack() as stack:
        if form.bundle is not None:
            stack.enter_context(form.bundle)
        tenant = tenant if tenant is not None else caller(request, form=False)
        if form.bundle is None:
            raise InvalidRequest("the multipart field 'bundle' (the .tar.gz file) is required")
        try:
            result = context.pipeline.upload(parse_fields(form.fields, tenant), form.bundle)
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
