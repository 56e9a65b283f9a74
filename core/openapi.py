"""The OpenAPI 3.1 description of every endpoint the router serves, at /openapi.json.

Bodies that have a pydantic model take its JSON schema (`UploadResult`, the
S3 notification, the upload fields' limits from `UploadRequest`); the other
answers, built as dicts in `core.views`, `core.direct` and `core.health`, are
described here once. Every error is the wire format's envelope, with the codes
each status can carry (README "Error codes"); 429 and 503 carry `Retry-After`,
405 carries `Allow`. The document is built once per process.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from core import __version__
from core.auth.records import NewUser, PasswordLogin, TokenLogin
from core.events import S3Notification
from core.keys import BUNDLE_ID
from core.models import UploadRequest, UploadResult
from core.search import SearchRequest

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"
CODES: dict[int, list[str]] = {
    400: ["INVALID_REQUEST", "INVALID_COLLECTION", "INVALID_BUNDLE", "UNSAFE_PATH", "UNSAFE_MEMBER",
          "MISSING_MEMBER", "UNEXPECTED_MEMBER", "DUPLICATE_MEMBER", "HASH_MISMATCH",
          "SIZE_MISMATCH", "BUNDLE_ID_MISMATCH", "INVALID_JSON", "UNKNOWN_EVENT"],
    401: ["UNAUTHORIZED"],
    403: ["FORBIDDEN", "ADMIN_ONLY", "ADMIN_LOOPBACK_ONLY", "CSRF_FAILED"],
    404: ["NOT_FOUND", "AUTH_DISABLED", "WORKSPACE_NOT_FOUND", "COLLECTION_NOT_FOUND", "FILE_NOT_FOUND",
          "SEARCH_UNAVAILABLE", "REINDEX_NOT_FOUND", "REINDEX_UNAVAILABLE"],
    405: ["METHOD_NOT_ALLOWED"],
    406: ["NOT_ACCEPTABLE"],
    409: ["SEQUENCE_MISMATCH", "BUNDLE_ID_CONFLICT", "INDEX_INCOMPATIBLE", "USER_EXISTS", "REINDEX_FINISHED",
          "WORKSPACE_DELETING"],
    413: ["BUNDLE_TOO_LARGE", "BUNDLE_LIMIT_EXCEEDED", "REQUEST_TOO_LARGE", "TOO_MANY_RECORDS",
          "FORM_FIELD_TOO_LARGE"],
    414: ["REQUEST_LINE_TOO_LONG"],
    415: ["UNSUPPORTED_MEDIA_TYPE"],
    422: ["FILE_NOT_TEXT"],
    429: ["RATE_LIMITED", "LOGIN_RATE_LIMITED"],
    500: ["INTERNAL_ERROR", "PROCESSING_ERROR"],
    501: ["DIRECT_UPLOAD_UNAVAILABLE"],
    503: ["WORKSPACE_BUSY", "STORAGE_UNAVAILABLE", "STORAGE_FULL", "INDEX_UNAVAILABLE", "LEASE_LOST",
          "SERVICE_UNAVAILABLE", "REINDEX_LEASE_LOST"],
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "required": True,
                               "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
ALLOW = {"Allow": {"description": "the methods this endpoint answers", "required": True,
                   "schema": {"type": "string", "pattern": "^[A-Z]+(, [A-Z]+)*$"}}}
STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
COUNT = {"type": "integer", "minimum": 0}
RPC_ID = {"type": ["string", "integer", "null"]}


def _object(required: list[str], **properties: Any) -> Schema:
    return {"type": "object", "required": required, "properties": properties,
            "additionalProperties": True}


def _error(status: int) -> Schema:
    detail = _object(["code", "message"], code={"enum": CODES[status]}, message=STRING,
                     expected_sequence=COUNT, received_sequence=COUNT, retry_after=COUNT)
    return _object(["success", "error"], success={"const": False}, error=detail)


def _json(schema: Schema, description: str = "success", headers: Schema | None = None) -> Schema:
    answer: Schema = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _errors(*statuses: int) -> Schema:
    headers = {405: ALLOW, 429: RETRY_AFTER, 503: RETRY_AFTER}
    return {str(s): _json(_error(s), f"refused: {', '.join(CODES[s])}", headers.get(s)) for s in statuses}


def _read_only(operation: Schema) -> Schema:
    """A GET, and the HEAD that answers as it without a body (every GET endpoint)."""
    head = {str(status): {k: v for k, v in answer.items() if k != "content"}
            for status, answer in operation["responses"].items()}
    get = {**operation, "responses": {**operation["responses"], **_errors(405)}}
    return {"get": get, "head": {**get, "operationId": get["operationId"] + "Head",
                                 "summary": "As GET, without the body", "responses": head}}


def _query(name: str, schema: Schema, required: bool = False, description: str = "") -> Schema:
    parameter = {"name": name, "in": "query", "required": required, "schema": schema}
    return {**parameter, "description": description} if description else parameter


def _component(name: str) -> Schema:
    return {"$ref": REF.format(model=name)}


def _non_null(field: Schema) -> Schema:
    """A pydantic field's schema without its `null` alternative, title or default."""
    schema = next((s for s in field.get("anyOf", [field]) if s.get("type") != "null"), field)
    return {k: v for k, v in schema.items() if k not in ("title", "default")}


def _form_fields() -> Schema:
    """The upload's text fields, with the limits `UploadRequest` enforces."""
    model = UploadRequest.model_json_schema()["properties"]

    def text(name: str) -> Schema:
        return _non_null(model[name])

    return {
        "workspace_path": {**text("workspace_path"), "pattern": "^[^\\u0000]*$",
                           "description": "e.g. /work/myrepo"},
        "collection_name": {**text("collection_name"), "description": "empty: the manifest's"},
        "sequence_number": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 10**18 - 1},
                                      {"type": "string", "pattern": "^[0-9]{0,18}$"}],
                            "description": "a positive integer; empty or omitted: the next one"},
        "force": {"type": "string", "enum": ["True", "False", "true", "false", "1", "0", "yes", "no", ""],
                  "description": "apply as the next number whatever sequence_number says"},
        "source_path": {**text("source_path"), "description": "informational"},
        "logical_repo_id": {**text("logical_repo_id"), "description": "e.g. git:0123456789abcdef"},
        "session": {"type": "string", "description": "an API key or token, as existing clients send it"},
    }


def _upload_url_bodies(fields: Schema) -> tuple[Schema, Schema]:
    """upload-url takes the upload's fields as a form, or as JSON (where null is absent)."""
    bundle_id = {"type": "string", "pattern": f"^({BUNDLE_ID.pattern})?$",
                 "description": "the id the bundle's manifest will carry; empty: a new UUID"}
    form = {"type": "object", "required": ["workspace_path"],
            "properties": {**fields, "bundle_id": bundle_id}}
    as_json = {**fields, "bundle_id": bundle_id, "force": {"anyOf": [{"type": "boolean"}, fields["force"]]}}
    body = {"type": "object", "required": ["workspace_path"], "properties": {
        name: schema if name == "workspace_path" else {"anyOf": [*schema.get("anyOf", [schema]),
                                                                 {"type": "null"}]}
        for name, schema in as_json.items()}}
    return form, body


def _schemas() -> Schema:
    """Components: the pydantic models' schemas, and the answers described here."""
    _, defs = models_json_schema([(UploadResult, "serialization"), (S3Notification, "validation"),
                                  (TokenLogin, "validation"), (PasswordLogin, "validation"),
                                  (NewUser, "validation")], ref_template=REF)
    server_info = _object(["version", "max_bundle_size_mb", "supported_formats", "storage_backend"],
                          version=STRING, max_bundle_size_mb=COUNT,
                          supported_formats={"type": "array", "items": STRING}, storage_backend=STRING)
    pending = {"anyOf": [{"type": "null"}, _object(["bundle_id", "sequence"], bundle_id=STRING,
                                                   sequence=COUNT, lease_expires_in_s={"type": "number"})]}
    states = ["awaiting_upload", "uploaded", "processing", "committed", "refused", "expired"]
    answers = {
        "Health": _object(["status", "timestamp", "version", "qdrant_url", "work_dir"],
                          status={"enum": ["healthy", "ready", "unavailable"]}, timestamp=STRING,
                          version=STRING, qdrant_url={"enum": ["server", "embedded"]},
                          qdrant_mode={"enum": ["server", "embedded"]},
                          work_dir={"enum": ["filesystem", "s3"]},
                          storage_backend={"enum": ["filesystem", "s3"]},
                          checks={"type": "object", "additionalProperties": STRING}),
        "Status": _object(["workspace_path", "workspace_key", "collection_name", "last_sequence", "status",
                           "server_info"],
                          workspace_path=STRING, workspace_key=STRING, collection_name=STRING,
                          last_sequence=COUNT, last_upload=NULLABLE_STRING, last_bundle_id=NULLABLE_STRING,
                          pending_operations=COUNT, pending_bundle=pending,
                          indexed_points={"type": ["integer", "null"]},
                          status={"enum": ["ready", "deleting"]},
                          server_info=server_info,
                          index={"anyOf": [{"type": "null"}, _component("IndexState")]}),
        "IndexState": _object(["serving", "built_with", "drift", "needs_reindex", "reindex"],
                              serving=NULLABLE_STRING, built_with={"type": "object"},
                              drift={"type": "array", "items": STRING}, needs_reindex={"type": "boolean"},
                              reindex={"anyOf": [{"type": "null"}, _component("ReindexJob")]}),
        "ReindexJob": _object(["job_id", "collection_name", "state", "target", "workspaces_total",
                               "workspaces_done", "files_done", "points_written", "started_at"],
                              job_id=STRING, tenant=STRING, collection_name=STRING,
                              stored_collection=STRING,
                              state={"enum": ["building", "switching", "done", "aborted", "failed"]},
                              serving=NULLABLE_STRING, target=STRING, built_with={"type": "object"},
                              reasons={"type": "array", "items": STRING}, workspaces_total=COUNT,
                              workspaces_done=COUNT, files_done=COUNT, points_written=COUNT,
                              commits_done=COUNT, batches_redone=COUNT, waiting_for=NULLABLE_STRING,
                              started_at=STRING, updated_at=STRING, finished_at=NULLABLE_STRING,
                              error=NULLABLE_STRING, lease_expires_in_s={"type": "number"}),
        "CollectionState": _object(["collection_name", "serving", "drift", "needs_reindex"],
                                   tenant=STRING, collection_name=STRING, stored_collection=STRING,
                                   serving=NULLABLE_STRING, points={"type": ["integer", "null"]},
                                   built_with={"type": "object"}, drift={"type": "array", "items": STRING},
                                   needs_reindex={"type": "boolean"},
                                   reindex={"anyOf": [{"type": "null"}, _component("ReindexJob")]}),
        "AnonymousStatus": _object(["workspace_path", "collection_name", "status", "server_info"],
                                   workspace_path=STRING, collection_name=STRING,
                                   status={"const": "ready"}, authenticated={"const": False},
                                   server_info=server_info),
        "AuthStatus": _object(["enabled", "has_users", "session_ttl_seconds"], enabled={"type": "boolean"},
                              has_users={"type": ["boolean", "null"]}, session_ttl_seconds=COUNT),
        "Session": _object(["session_id", "user_id", "expires_at"], session_id=STRING, user_id=STRING,
                           expires_at={**COUNT, "description": "unix seconds; 0: never expires"}),
        "User": _object(["user_id", "username"], user_id=STRING, username=STRING, tenant=STRING,
                        admin={"type": "boolean"}),
        "Manifest": _object(["workspace_path", "workspace_key", "last_sequence", "files", "next_cursor"],
                            workspace_path=STRING, workspace_key=STRING, last_sequence=COUNT,
                            files={"type": "object", "additionalProperties": {
                                "type": "string", "pattern": "^sha1:[0-9a-f]{40}$"}},
                            next_cursor=NULLABLE_STRING, status={"enum": ["ready", "deleting"]}),
        "UploadUrl": _object(["success", "bundle_id", "workspace_key", "upload_url", "method", "expires_in",
                              "expires_at", "max_bundle_size_mb"],
                             success={"const": True}, bundle_id=STRING, workspace_key=STRING,
                             upload_url=STRING, method={"const": "PUT"}, expires_in=COUNT,
                             expires_at=STRING, max_bundle_size_mb=COUNT),
        "BundleState": _object(["bundle_id", "state"], bundle_id=STRING, state={"enum": states},
                               result=_component("UploadResult"), sequence_number=COUNT,
                               error=_object(["code", "message"], code=STRING, message=STRING)),
        "EventOutcomes": _object(["success", "outcomes"], success={"const": True}, outcomes={
            "type": "array", "items": _object(["key", "outcome"], key=STRING, outcome={
                "enum": ["processed", "duplicate", "refused", "ignored"]})}),
        "BridgeState": _object(["workspace_path", "repo_name", "active_collection", "serving_collection",
                                "previous_collection", "indexing_status", "staging"],
                               workspace_path=NULLABLE_STRING, repo_name=NULLABLE_STRING,
                               active_collection=STRING, serving_collection=STRING,
                               previous_collection=NULLABLE_STRING,
                               indexing_status={"enum": ["idle", "indexing", "empty"]},
                               staging={"type": ["boolean", "null"]}, workspace_key=NULLABLE_STRING,
                               physical_collection=NULLABLE_STRING, staging_collection=NULLABLE_STRING,
                               last_sequence={"type": ["integer", "null"], "minimum": 0}),
        "SearchHits": _object(["query", "kind", "collection_name", "workspace_key", "hits"],
                              query=STRING, kind={"enum": ["code", "commits"]}, collection_name=STRING,
                              workspace_key=NULLABLE_STRING,
                              hits={"type": "array", "items": {"anyOf": [_component("CodeHit"),
                                                                         _component("CommitHit")]}}),
        "CodeHit": _object(["path", "host_path", "start_line", "end_line", "score", "language", "snippet"],
                           path=STRING, host_path=NULLABLE_STRING, start_line=COUNT, end_line=COUNT,
                           score={"type": "number"}, language=STRING, snippet=STRING,
                           snippet_truncated={"type": "boolean"}, workspace_key=NULLABLE_STRING),
        "CommitHit": _object(["commit_id", "author", "date", "message", "files", "score"],
                             commit_id=STRING, author=STRING, date=STRING, message=STRING,
                             files={"type": "array", "items": STRING}, files_truncated={"type": "boolean"},
                             score={"type": "number"}, workspace_key=NULLABLE_STRING),
        "StoredFile": _object(["workspace_path", "workspace_key", "path", "size", "start_line", "end_line",
                               "total_lines", "content", "truncated"],
                              workspace_path=STRING, workspace_key=STRING, path=STRING, size=COUNT,
                              start_line=COUNT, end_line={"type": ["integer", "null"]},
                              total_lines={"type": ["integer", "null"]}, content=STRING,
                              truncated={"type": "boolean"}),
        **_deletion_schemas(),
        "JsonRpcMessage": _object(["jsonrpc", "method"], jsonrpc={"const": "2.0"}, method=STRING,
                                  id={"type": ["string", "integer"],
                                      "description": "absent: a notification, answered 202"},
                                  params={"type": ["object", "null"]}),
        "JsonRpcAnswer": _object(["jsonrpc", "id"], jsonrpc={"const": "2.0"}, id=RPC_ID,
                                 result={"type": "object"}, error=_component("JsonRpcError")),
        "JsonRpcError": _object(["code", "message"], code={"type": "integer"}, message=STRING, data={}),
        "GcSummary": _object(["success", "workspaces", "sequences_removed", "objects_removed",
                              "bytes_removed", "removed", "unfinished_workspaces", "failed_workspaces",
                              "duration_ms"],
                             success={"const": True}, workspaces=COUNT, sequences_removed=COUNT,
                             objects_removed=COUNT, bytes_removed=COUNT,
                             removed={"type": "object", "additionalProperties": _object(
                                 ["objects", "bytes"], objects=COUNT, bytes=COUNT)},
                             unfinished_workspaces=COUNT, failed_workspaces=COUNT,
                             reindex={"type": "array", "items": _component("ReindexJob")},
                             duration_ms={"type": "number", "minimum": 0}),
        "CloudEvent": _object(["specversion", "id", "source", "type"], specversion=STRING, id=STRING,
                              source=STRING, type=STRING, subject=STRING, data={}),
    }
    return {**defs["$defs"], **answers}


def _deletion_schemas() -> Schema:
    """The answers of the two DELETE endpoints (`core.deletion`)."""
    workspace = _object(["deleted", "workspace_key", "workspace_path", "objects_removed", "points_removed"],
                        deleted={"type": "boolean"}, workspace_key=STRING, workspace_path=STRING,
                        logical_repo_id=NULLABLE_STRING, collection_name=NULLABLE_STRING,
                        resumed={"type": "boolean"}, objects_removed=COUNT, points_removed=COUNT)
    return {
        "WorkspaceDeletion": {**workspace, "required": ["success", *workspace["required"]],
                              "properties": {"success": {"const": True}, **workspace["properties"]}},
        "CollectionDeletion": _object(
            ["success", "deleted", "collection_name", "collection_dropped", "workspaces", "objects_removed",
             "points_removed"],
            success={"const": True}, deleted={"type": "boolean"}, collection_name=STRING,
            collection_dropped={"type": "boolean"}, workspaces={"type": "array", "items": workspace},
            objects_removed=COUNT, points_removed=COUNT),
    }


def _deletion_paths(workspace: list[Schema], secured: list[Schema], guarded: Schema) -> Schema:
    """DELETE workspace and collection: 200 with what was removed, also when nothing was
    there (idempotent); a live upload holds them off (503 WORKSPACE_BUSY)."""
    return {
        "/api/v1/delta/workspace": {"delete": {
            "operationId": "deleteWorkspace",
            "summary": "Delete a workspace: tree, records, raw bundles, commits, its Qdrant points",
            "parameters": workspace, "security": secured,
            "responses": {"200": _json(_component("WorkspaceDeletion")), **_errors(400), **guarded}}},
        "/api/v1/delta/collection": {"delete": {
            "operationId": "deleteCollection",
            "summary": "Delete every workspace of the tenant in a collection, then the collection",
            "parameters": [_query("collection_name", {"type": "string", "minLength": 1}, required=True,
                                  description="the collection's name as uploads give it")],
            "security": secured,
            "responses": {"200": _json(_component("CollectionDeletion")), **_errors(400), **guarded}}},
    }


def _auth_paths() -> Schema:
    """/auth/*: JSON bodies of at most 16 KiB (413 beyond); 404 AUTH_DISABLED with AUTH_MODE=none."""
    admin = {"name": "X-Admin-Token", "in": "header", "required": False, "schema": STRING,
             "description": "an admin's session id or CTXCE_AUTH_ADMIN_TOKEN; needed once a user exists"}

    def post(operation: str, summary: str, body: str, answer: str, *statuses: int) -> Schema:
        return {"post": {"operationId": operation, "summary": summary, "requestBody": {
            "required": True, "content": {"application/json": {"schema": _component(body)}}},
            "responses": {"200": _json(_component(answer)),
                          **_errors(400, *statuses, 404, 405, 413, 500, 503)}}}

    users = post("createUser", "Create a user: open until the first user (an admin) exists",
                 "NewUser", "User", 401, 403, 409)
    users["post"]["parameters"] = [admin]
    return {
        "/auth/status": _read_only({"operationId": "authStatus", "summary": "Whether sessions are on",
                                    "responses": {"200": _json(_component("AuthStatus")),
                                                  **_errors(500, 503)}}),
        "/auth/login": post("login", "A session for the shared token (CTXCE_AUTH_SHARED_TOKEN)",
                            "TokenLogin", "Session", 401, 429),
        "/auth/login/password": post("loginPassword", "A session for a user name and password",
                                     "PasswordLogin", "Session", 401, 429),
        "/auth/users": users,
    }


def _search_path(secured: list[Schema], guarded: Schema) -> Schema:
    """GET with query parameters, POST with the same names as JSON (`core.search.SearchRequest`)."""
    model = SearchRequest.model_json_schema()
    parameters = [_query(name, _non_null(field), required=name in model["required"])
                  for name, field in model["properties"].items()]
    body = {**model, "properties": {**model["properties"], "session": {
        "type": "string", "description": "a credential, as the existing clients send it"}}}
    # a long query in the query string can pass LIMIT_REQUEST_LINE: POST takes any length
    answer = {"200": _json(_component("SearchHits")), **_errors(400, 404, 414), **guarded}
    get = _read_only({"operationId": "search", "summary": "Hybrid search over a workspace or collection",
                      "parameters": parameters, "security": secured, "responses": answer})
    post = {"operationId": "searchPost", "summary": "As GET, the parameters as a JSON object",
            "security": secured, "requestBody": {"required": True, "content": {
                "application/json": {"schema": body}}},
            "responses": {**answer, **_errors(413, 405)}}
    return {**get, "post": post}


def _mcp_path(secured: list[Schema], guarded: Schema) -> Schema:
    """/mcp: one JSON-RPC message per POST. The SDK's own refusals (400, and 404 for an unknown
    method at protocol 2026-07-28) keep the JSON-RPC error MCP clients read, in the envelope."""
    def refusal(status: int, description: str, *detail: Schema) -> Schema:
        error = {"anyOf": [*detail, _component("JsonRpcError")]}
        return _json(_object(["success", "error"], success={"const": False}, error=error,
                             jsonrpc={"const": "2.0"}, id=RPC_ID), description)

    envelope_400 = _error(400)["properties"]["error"]
    return {"post": {
        "operationId": "mcp",
        "summary": "MCP server (streamable HTTP, stateless): search code and commits, read files, "
                   "list workspaces",
        "description": "One JSON-RPC request or notification per POST, answered in JSON; no sessions, "
                       "so no GET event stream and no DELETE. Tools see the caller's tenant only.",
        "security": secured,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _component("JsonRpcMessage")}}},
        "responses": {
            "200": _json(_component("JsonRpcAnswer"), "the JSON-RPC response, a result or an error"),
            "202": {"description": "a notification, accepted"},
            "400": refusal(400, f"refused: {', '.join(CODES[400])}, or a JSON-RPC error", envelope_400),
            "404": refusal(404, "a JSON-RPC error: an unknown method (protocol 2026-07-28)"),
            **_errors(403, 406, 413, 415), **guarded}}}


def _reindex_paths(secured: list[Schema], guarded: Schema) -> dict[str, Any]:
    """The admin API of `core.reindex` (functions/admin_api.py)."""
    admin = {**guarded, **_errors(403)}  # 403: not loopback with auth off, another tenant
    body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False,
        "properties": {"collection_name": STRING, "workspace_path": STRING, "logical_repo_id": STRING,
                       "all_drifted": {"type": "boolean"},
                       "tenant": {**STRING, "description": "admins: another tenant's collection"}}}}}}
    jobs = _object(["jobs"], jobs={"type": "array", "items": _component("ReindexJob")})
    return {
        "/api/v1/admin/reindex": {
            **_read_only({"operationId": "reindexState", "security": secured,
                          "summary": "The caller's collections (what built them, drift) and reindex jobs",
                          "responses": {"200": _json(_object(["collections", "jobs"], collections={
                              "type": "array", "items": _component("CollectionState")}, jobs={
                              "type": "array", "items": _component("ReindexJob")})),
                                        **_errors(404), **admin}}),
            "post": {"operationId": "reindex", "security": secured, "requestBody": body,
                     "summary": "Rebuild a collection (by name, by a workspace in it, or every one "
                                "that drifted) from the stored trees, serving it throughout",
                     "responses": {"202": _json(jobs, "the jobs, being worked on in the background"),
                                   **_errors(400, 404, 413), **admin}}},
        "/api/v1/admin/reindex/abort": {"post": {
            "operationId": "reindexAbort", "security": secured, "requestBody": body,
            "summary": "Abort a collection's rebuild; the serving collection is untouched",
            "responses": {"200": _json(_object(["job"], job=_component("ReindexJob"))),
                          **_errors(400, 404, 409, 413), **admin}}},
    }


@cache
def openapi_document() -> dict[str, Any]:
    fields = _form_fields()
    upload_url_form, upload_url_json = _upload_url_bodies(fields)
    workspace = [_query("workspace_path", fields["workspace_path"], required=True),
                 _query("logical_repo_id", STRING, description="the repo identity it was uploaded with")]
    guarded = _errors(401, 405, 429, 500, 503)  # every authenticated endpoint
    secured: list[Schema] = [{}, {"bearer": []}, {"apiKey": []}, {"session": []}]  # {}: AUTH_MODE=none
    to_state = {"BundleState": {"operationId": "bundleState", "parameters": {
        "bundle_id": "$response.body#/bundle_id", "workspace_path": "$request.body#/workspace_path"}}}
    health = {"responses": {"200": _json(_component("Health")),
                            "503": _json(_component("Health"), "storage or Qdrant does not answer"),
                            **_errors(500)}}
    paths: dict[str, Any] = {
        "/health": _read_only({
            "operationId": "health", "summary": "Liveness; with ?ready=1 readiness, as /ready",
            "parameters": [_query("ready", STRING, description="1, true or yes: readiness")], **health}),
        "/ready": _read_only({"operationId": "ready", "summary": "Readiness: storage and Qdrant answer",
                              **health}),
        "/api/v1/delta/status": _read_only({
            "operationId": "status", "summary": "The workspace's sequence record",
            "parameters": workspace, "security": secured,
            "description": "With auth on and no credential at all: AnonymousStatus, no tenant data",
            "responses": {"200": _json({"anyOf": [_component("Status"), _component("AnonymousStatus")]}),
                          **_errors(400), **guarded}}),
        "/api/v1/delta/manifest": _read_only({
            "operationId": "manifest", "summary": "Every file the server holds, one page at a time",
            "parameters": [*workspace,
                           _query("limit", {"type": "integer", "minimum": 1},
                                  description="1 to MANIFEST_PAGE_LIMIT (400 beyond it)"),
                           _query("cursor", STRING, description="a next_cursor this service returned")],
            "security": secured,
            "responses": {"200": _json(_component("Manifest")), **_errors(400), **guarded}}),
        "/api/v1/delta/upload": {"post": {
            "operationId": "upload", "summary": "Apply one delta bundle, synchronously",
            "security": secured,
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["bundle", "workspace_path"],
                "properties": {"bundle": {"type": "string", "format": "binary",
                                          "description": "the .tar.gz delta bundle"}, **fields}}}}},
            "responses": {"200": {**_json(_component("UploadResult")), "links": to_state},
                          **_errors(400, 409, 413), **guarded}}},
        "/api/v1/delta/upload-url": {"post": {
            "operationId": "uploadUrl", "summary": "A presigned PUT for a direct-to-bucket upload (S3 only)",
            "security": secured,
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": upload_url_json},
                "application/x-www-form-urlencoded": {"schema": upload_url_form}}},
            "responses": {"200": {**_json(_component("UploadUrl")), "links": to_state},
                          **_errors(400, 413, 501), **guarded}}},
        "/api/v1/delta/bundles/{bundle_id}": _read_only({
            "operationId": "bundleState", "summary": "Where one bundle stands",
            "parameters": [{"name": "bundle_id", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": f"^{BUNDLE_ID.pattern}$"}}, *workspace],
            "security": secured,
            "responses": {"200": _json(_component("BundleState")), **_errors(400, 404), **guarded}}),
        "/api/v1/delta/events": {"post": {
            "operationId": "events",
            "summary": "Object-created events: S3/RGW notification JSON, or a CloudEvent "
                       "(structured, or binary with ce-* headers)",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _component("S3Notification")},
                "application/cloudevents+json": {"schema": _component("CloudEvent")}}},
            "responses": {"200": _json(_component("EventOutcomes")),
                          **_errors(400, 405, 413, 429, 500, 503)}}},
        "/api/v1/delta/file": _read_only({
            "operationId": "storedFile", "summary": "One file of the workspace's tree (lines of it)",
            "parameters": [*workspace,
                           _query("path", {"type": "string", "minLength": 1}, required=True,
                                  description="the file's path in the workspace, as a hit names it"),
                           _query("start_line", {"type": "integer", "minimum": 1}),
                           _query("end_line", {"type": "integer", "minimum": 1})],
            "security": secured,
            "responses": {"200": _json(_component("StoredFile")), **_errors(400, 404, 422), **guarded}}),
        "/api/v1/search": _search_path(secured, guarded),
        **_reindex_paths(secured, guarded),
        "/mcp": _mcp_path(secured, guarded),
        **_auth_paths(),
        **_deletion_paths(workspace, secured, guarded),
        "/bridge/state": _read_only({
            "operationId": "bridgeState", "summary": "Which collection serves a repo (the MCP bridge)",
            "parameters": [_query("collection", STRING, description="a collection name"),
                           _query("workspace", fields["workspace_path"],
                                  description="a workspace path, e.g. /work/myrepo (wins over collection)"),
                           _query("repo_name", STRING,
                                  description="the repo's name; alone, names /work/<repo_name>")],
            "security": secured,
            "responses": {"200": _json(_component("BridgeState")), **_errors(400, 404), **guarded}}),
        "/api/v1/admin/gc": {"post": {
            "operationId": "gc", "summary": "One retention sweep of every workspace (README \"Retention\")",
            "description": "Acts on every tenant: with auth on, CTXCE_AUTH_ADMIN_TOKEN (X-Admin-Token) or "
                           "an admin user's session (bearer); with AUTH_MODE=none, a loopback client. "
                           "Any body (at most 16 KiB) is ignored.",
            "security": [{}, {"adminToken": []}, {"bearer": []}],
            "parameters": [{"name": "X-Admin-Token", "in": "header", "required": False, "schema": STRING,
                            "description": "CTXCE_AUTH_ADMIN_TOKEN (auth on)"}],
            "responses": {"200": _json(_component("GcSummary")), **_errors(403, 413), **guarded}}},
        "/openapi.json": _read_only({"operationId": "openapi", "summary": "This document",
                                     "responses": {"200": _json({"type": "object"}), **_errors(429, 500)}}),
        "/metrics": _read_only({"operationId": "metrics", "summary": "Prometheus metrics of this process",
                                "security": secured,
                                "responses": {"200": {"description": "text exposition format",
                                                      "content": {"text/plain": {"schema": STRING}}},
                                              **_errors(401, 429, 500)}}),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Delta upload service", "version": __version__,
                 "description": 'Errors: {"success": false, "error": {"code", "message", …}}'},
        "paths": paths,
        "components": {"schemas": _schemas(), "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "API key, JWT or session id (AUTH_MODE)"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "adminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token"},
            "session": {"type": "apiKey", "in": "query", "name": "session"},
        }},
    }
