"""DELETE /api/v1/delta/workspace?workspace_path=…[&logical_repo_id=…] and
DELETE /api/v1/delta/collection?collection_name=… — deletion (`core.deletion`).

Tenant-scoped and authenticated as status is. Both answer 200 with what was
removed; again, or for something that never existed, 200 with `"deleted": false`
and zero counts (idempotent). A live upload makes them wait up to CLAIM_WAIT_SECS,
then 503 WORKSPACE_BUSY with Retry-After.
"""

from __future__ import annotations

import flask

from core.context import service_context
from core.errors import InvalidRequest
from functions._http import caller, handled, json_response, require_method, workspace_args

COLLECTION_PATH = "/api/v1/delta/collection"


@handled
def delete_workspace(request: flask.Request) -> flask.Response:
    require_method(request, "DELETE")
    args = workspace_args(request)
    result = service_context().deletion.delete_workspace(args["tenant"], args["path"],
                                                         args["logical_repo_id"])
    return json_response(200, {"success": True, **result.model_dump(mode="json")})


@handled
def delete_collection(request: flask.Request) -> flask.Response:
    require_method(request, "DELETE")
    tenant = caller(request)
    name = request.args.get("collection_name", "")
    if not name:
        raise InvalidRequest("collection_name is required")
    result = service_context().deletion.delete_collection(tenant, name)
    return json_response(200, {"success": True, **result.model_dump(mode="json")})


def deletion(request: flask.Request) -> flask.Response:
    """One function for both: the collection's path deletes a collection, any other a workspace."""
    if request.path.rstrip("/").endswith(COLLECTION_PATH):
        return delete_collection(request)
    return delete_workspace(request)
