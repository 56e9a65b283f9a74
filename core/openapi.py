"""The OpenAPI 3.1 description of every endpoint, served at /openapi.json.

Response bodies that have a pydantic model take its JSON schema; the others
are described here once. Every error is the wire format's envelope.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from core import __version__
from core.keys import BUNDLE_ID
from core.models import UploadResult

ERROR = {
    "type": "object",
    "required": ["success", "error"],
    "properties": {
        "success": {"const": False},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "additionalProperties": True,
        },
    },
}
JSON_OBJECT = {"type": "object", "additionalProperties": True}
MANIFEST = {
    "type": "object",
    "required": ["files", "last_sequence"],
    "properties": {"files": {"type": "object", "additionalProperties": {"type": "string"}},
                   "last_sequence": {"type": "integer"},
                   "next_cursor": {"type": ["string", "null"]}},
    "additionalProperties": True,
}
WORKSPACE_PARAMS = [
    {"name": "workspace_path", "in": "query", "required": True, "schema": {"type": "string"}},
    {"name": "logical_repo_id", "in": "query", "required": False, "schema": {"type": "string"}},
]
UPLOAD_FIELDS = {
    "workspace_path": {"type": "string"},
    "collection_name": {"type": "string"},
    "sequence_number": {"type": "string", "description": "a positive integer; omit to let the server assign"},
    "force": {"type": "string", "description": "True/False, true/false, 1/0, yes/no; empty is false"},
    "source_path": {"type": "string"},
    "logical_repo_id": {"type": "string"},
    "session": {"type": "string", "description": "an API key or token, as existing clients send it"},
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": "error", "content": {"application/json": {"schema": ERROR}}}
            for code in codes}


def _json(schema: dict[str, Any], description: str = "success") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


@cache
def openapi_document() -> dict[str, Any]:
    result = UploadResult.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = result.pop("$defs", {})
    common = _errors(401, 429, 500, 503)
    status_schema = {"type": "object", "required": ["workspace_path", "collection_name",
                                                    "last_sequence", "status", "server_info"],
                     "properties": {"workspace_path": {"type": "string"},
                                    "collection_name": {"type": "string"},
                                    "last_sequence": {"type": "integer", "minimum": 0},
                                    "status": {"const": "ready"},
                                    "server_info": JSON_OBJECT},
                     "additionalProperties": True}
    health = {"get": {"summary": "Liveness (readiness with ?ready=1)", "responses": {
        "200": _json(JSON_OBJECT), **_errors(503)},
        "parameters": [{"name": "ready", "in": "query", "required": False,
                        "schema": {"type": "string"}}]}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Delta upload service", "version": __version__},
        "paths": {
            "/health": health,
            "/ready": {"get": {"summary": "Readiness: storage and Qdrant answer",
                               "responses": {"200": _json(JSON_OBJECT), **_errors(503)}}},
            "/api/v1/delta/status": {"get": {
                "summary": "The workspace's sequence record",
                "parameters": WORKSPACE_PARAMS,
                "responses": {"200": _json(status_schema), **_errors(400, 405), **common}}},
            "/api/v1/delta/manifest": {"get": {
                "summary": "Every file the server holds, paged",
                "parameters": [*WORKSPACE_PARAMS,
                               {"name": "limit", "in": "query", "required": False,
                                "schema": {"type": "string"}},
                               {"name": "cursor", "in": "query", "required": False,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json(MANIFEST),
                              **_errors(400, 405), **common}}},
            "/api/v1/delta/upload": {"post": {
                "summary": "Apply one delta bundle, synchronously",
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["bundle", "workspace_path"],
                    "properties": {"bundle": {"type": "string", "format": "binary"}, **UPLOAD_FIELDS},
                }}}},
                "responses": {"200": _json({"$ref": "#/components/schemas/UploadResult"}),
                              **_errors(400, 405, 409, 413), **common}}},
            "/api/v1/delta/upload-url": {"post": {
                "summary": "A presigned PUT for a direct-to-bucket upload",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"type": "object", "required": ["workspace_path"],
                                                    "properties": {**UPLOAD_FIELDS,
                                                                   "bundle_id": {"type": "string"}}}},
                    "application/x-www-form-urlencoded": {"schema": {
                        "type": "object", "required": ["workspace_path"],
                        "properties": {**UPLOAD_FIELDS, "bundle_id": {"type": "string"}}}}}},
                "responses": {"200": _json(JSON_OBJECT), **_errors(400, 405, 501), **common}}},
            "/api/v1/delta/bundles/{bundle_id}": {"get": {
                "summary": "Where one bundle stands",
                "parameters": [{"name": "bundle_id", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": BUNDLE_ID.pattern}},
                               *WORKSPACE_PARAMS],
                "responses": {"200": _json(JSON_OBJECT), **_errors(400, 404, 405), **common}}},
            "/api/v1/delta/events": {"post": {
                "summary": "Object-created events: S3/RGW notification JSON or a CloudEvent",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": JSON_OBJECT},
                    "application/cloudevents+json": {"schema": JSON_OBJECT}}},
                "responses": {"200": _json(JSON_OBJECT), **_errors(400, 405, 500, 503)}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": _json(JSON_OBJECT)}}},
        },
        "components": {"schemas": {"UploadResult": result, **definitions}},
    }
