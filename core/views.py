"""Read-only answers about a workspace: status and manifest, straight from storage.

Nothing is cached in the process, so every instance answers the same.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

from core import __version__
from core.config import Settings
from core.errors import InvalidRequest
from core.keys import alias_key, workspace_key
from core.sequences import HeadRecord, Sequences
from core.storage import ObjectNotFound, ObjectStore
from core.workspace import list_files

SUPPORTED_FORMATS = ["tar.gz"]


def find_workspace(
    store: ObjectStore, settings: Settings, tenant: str, path: str, logical_repo_id: str | None
) -> tuple[str, HeadRecord | None]:
    """The workspace key and head for a path: with a repo id, that identity's; with a
    path alone, the workspace the path's latest committed upload went to (its alias),
    whatever identity that upload came with, else the path's own."""
    _check_path(path)
    ws = workspace_key(tenant, path, logical_repo_id)
    if not logical_repo_id:
        try:
            aliased = json.loads(store.get(alias_key(tenant, path)).body)["workspace_key"]
        except ObjectNotFound:
            aliased = None
        if aliased is not None:
            head, _ = Sequences(store, aliased, settings.lease_secs).read()
            if head is not None:
                return aliased, head
    head, _ = Sequences(store, ws, settings.lease_secs).read()
    return ws, head


def _check_path(path: str) -> None:
    if not path or "\x00" in path or len(path) > 4096:
        raise InvalidRequest("workspace_path is required (at most 4096 characters, no NUL)")


def _server_info(store: ObjectStore, settings: Settings) -> dict[str, Any]:
    return {
        "version": __version__,
        "max_bundle_size_mb": settings.max_bundle_size_mb,
        "supported_formats": SUPPORTED_FORMATS,
        "storage_backend": store.kind,
    }


def anonymous_status(store: ObjectStore, settings: Settings, path: str) -> dict[str, Any]:
    """The status a caller without credentials gets when auth is on (README "Sessions").

    The existing upload clients ask for status with no credentials before every
    upload and need `workspace_path`, `collection_name` and `"status": "ready"`.
    Nothing here is read from storage, so nothing of any tenant's data shows:
    `collection_name` is the deployment's COLLECTION_NAME, and `last_sequence`,
    the workspace key, bundle ids and counts are left out (the clients read
    `last_sequence` only when present). Storage is not even touched.
    """
    _check_path(path)
    return {
        "workspace_path": path,
        "collection_name": settings.collection_name,
        "status": "ready",
        "authenticated": False,
        "server_info": _server_info(store, settings),
    }


def status(
    store: ObjectStore, settings: Settings, tenant: str, path: str, logical_repo_id: str | None,
    count_points: Callable[[str, str], int | None] | None = None,
) -> dict[str, Any]:
    """The sequence record, plus the indexed point count when `count_points` is given."""
    ws, head = find_workspace(store, settings, tenant, path, logical_repo_id)
    pending = head.pending if head else None
    indexed = None  # no indexing: nothing to count
    if count_points is not None:
        indexed = count_points(head.collection_name, ws) if head is not None else 0
    return {
        "workspace_path": path,
        "workspace_key": ws,
        "source_path": head.source_path if head else None,
        "collection_name": head.collection_name if head else settings.collection_name,
        "last_sequence": head.last_sequence if head else 0,
        "last_upload": head.last_upload if head else None,
        "last_bundle_id": head.last_bundle_id if head else None,
        "pending_operations": pending.operations if pending else 0,
        "pending_bundle": (
            {
                "bundle_id": pending.bundle_id,
                "sequence": pending.sequence,
                "lease_expires_in_s": round(max(0.0, pending.lease_expires_at - time.time()), 1),
            }
            if pending
            else None
        ),
        "indexed_points": indexed,
        "status": "ready",
        "server_info": _server_info(store, settings),
    }


def manifest(
    store: ObjectStore,
    settings: Settings,
    tenant: str,
    path: str,
    logical_repo_id: str | None,
    cursor: str,
    limit: int | None,
) -> dict[str, Any]:
    """One page of `{path: "sha1:<hex>"}` for every file the server holds."""
    page = settings.manifest_page_limit if limit is None else limit
    if not 1 <= page <= settings.manifest_page_limit:
        raise InvalidRequest(f"limit must be between 1 and {settings.manifest_page_limit}")
    ws, head = find_workspace(store, settings, tenant, path, logical_repo_id)
    after = _decode_cursor(cursor)
    files, last = list_files(store, ws, after, page) if head else ({}, "")
    return {
        "workspace_path": path,
        "workspace_key": ws,
        "last_sequence": head.last_sequence if head else 0,
        "files": files,
        "next_cursor": _encode_cursor(last) if last else None,
    }


def _encode_cursor(path: str) -> str:
    return base64.urlsafe_b64encode(path.encode("utf-8")).decode("ascii")


def _decode_cursor(cursor: str) -> str:
    if not cursor:
        return ""
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError):
        raise InvalidRequest("cursor is not one this service returned") from None
