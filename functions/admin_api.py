"""/api/v1/admin/reindex — rebuild a collection from the stored trees (`core.reindex`).

    GET   /api/v1/admin/reindex          the caller's collections (drift, what built them) and jobs
    POST  /api/v1/admin/reindex          {"collection_name"} | {"workspace_path"[, "logical_repo_id"]}
                                         | {"all_drifted": true}; an admin may add "tenant"
    POST  /api/v1/admin/reindex/abort    {"collection_name"[, "tenant"]}

A POST answers 202 at once with the jobs; this instance works on them in the
background, and a POST for a collection whose job no live instance holds (its
instance died) continues that job here. Who may call: `functions._admin`.
"""

from __future__ import annotations

from typing import Any

import flask
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, ValidationError

from core.admin import AdminScope
from core.context import service_context
from core.errors import Forbidden, InvalidRequest
from core.models import invalid_fields, parse_json
from core.names import TENANT_RULE, is_tenant
from functions._admin import admin_scope
from functions._http import READ_ONLY, handled, json_response, require_method, small_body

ABORT = "/api/v1/admin/reindex/abort"


class ReindexBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    collection_name: StrictStr | None = None
    workspace_path: StrictStr | None = None
    logical_repo_id: StrictStr | None = None
    all_drifted: StrictBool = False
    tenant: StrictStr | None = None  # an admin acting on another tenant's collection


def _body(request: flask.Request) -> ReindexBody:
    limit = service_context().settings.json_max_body_kb * 1024
    request.max_content_length = limit
    body = parse_json(small_body(request, limit), "the JSON body")
    if not isinstance(body, dict):
        raise InvalidRequest("the JSON body must be an object")
    try:
        return ReindexBody.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest(f"invalid reindex request: {invalid_fields(exc)}") from None


def _tenant(scope: AdminScope, asked: str | None) -> str:
    """The tenant a request acts on: the caller's own, or, for an admin, the one named."""
    if asked is None or asked == scope.tenant:
        return scope.tenant
    if not service_context().settings.auth_enabled:
        raise InvalidRequest("with authentication off (AUTH_MODE=none) there is one tenant: leave out tenant")
    if not is_tenant(asked):
        raise InvalidRequest(f"tenant must be {TENANT_RULE}")
    if not scope.may_act_on(asked):
        raise Forbidden("only an admin may act on another tenant's collections", code="ADMIN_ONLY")
    return asked


@handled
def reindex(request: flask.Request) -> flask.Response:
    require_method(request, *READ_ONLY, "POST")
    scope = admin_scope(request)
    reindexing = service_context().reindexing
    if request.method != "POST":
        shown = None if scope.all_tenants else scope.tenant
        return json_response(200, {
            "collections": [state.public() for state in reindexing.collections(shown)],
            "jobs": [job.public() for job in reindexing.jobs(shown)]})
    body = _body(request)
    if request.path.rstrip("/") == ABORT:
        if body.collection_name is None:
            raise InvalidRequest("give the collection_name whose reindex to abort")
        job = reindexing.abort(_tenant(scope, body.tenant), body.collection_name)
        return json_response(200, {"job": job.public()})
    tenant: str | None = _tenant(scope, body.tenant)
    if body.all_drifted and scope.all_tenants and body.tenant is None:
        tenant = None  # an admin's "everything that drifted" is every tenant's
    jobs = reindexing.start(tenant, collection_name=body.collection_name, workspace_path=body.workspace_path,
                            logical_repo_id=body.logical_repo_id, all_drifted=body.all_drifted)
    answer: dict[str, Any] = {"jobs": [job.public() for job in jobs]}
    return json_response(202, answer)
