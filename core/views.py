"""Read-only answers about a workspace: status, manifest and one file, straight from storage.

Nothing is cached in the process, so every instance answers the same.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import __version__
from core.config import Settings
from core.errors import InvalidRequest, NotFound, Unprocessable
from core.indexing.languages import SNIFF_BYTES
from core.keys import alias_key, tenant_workspaces_prefix, tree_key, workspace_key
from core.paths import check_path
from core.sequences import HeadRecord, Sequences
from core.storage import ObjectNotFound, ObjectStore
from core.workspace import list_files, parallel_map

SUPPORTED_FORMATS = ["tar.gz"]
WORKSPACES_PAGE = 100


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
    index_status: Callable[[str], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """The sequence record, plus the indexed point count when `count_points` is given, and
    what serves the workspace's collection (drift, a reindex in progress) with `index_status`."""
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
        "index": index_status(head.collection_name) if index_status is not None and head else None,
        "status": _state(head),
        "server_info": _server_info(store, settings),
    }


def _state(head: HeadRecord | None) -> str:
    """"deleting" while a deletion's tombstone stands (uploads answer 409 meanwhile)."""
    return "deleting" if head is not None and head.deletion is not None else "ready"


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
    after = decode_cursor(cursor)
    # a workspace being deleted (core.deletion) holds nothing a client may build on
    live = head is not None and head.deletion is None
    files, last = list_files(store, ws, after, page) if live else ({}, "")
    return {
        "workspace_path": path,
        "workspace_key": ws,
        "last_sequence": head.last_sequence if head and live else 0,
        "files": files,
        "next_cursor": encode_cursor(last) if last else None,
        "status": _state(head),
    }


def list_workspaces(store: ObjectStore, settings: Settings, tenant: str, cursor: str,
                    limit: int | None) -> dict[str, Any]:
    """One page of the tenant's workspaces (100 unless `limit` says), each with its head's
    sequence and collection."""
    page = min(WORKSPACES_PAGE, settings.manifest_page_limit) if limit is None else limit
    if not 1 <= page <= settings.manifest_page_limit:
        raise InvalidRequest(f"limit must be between 1 and {settings.manifest_page_limit}")
    prefix = tenant_workspaces_prefix(tenant)
    after = decode_cursor(cursor)
    keys = []
    for key in store.list(prefix, start_after=prefix + after if after else ""):
        keys.append(key)
        if len(keys) >= page:
            break

    def describe(key: str) -> dict[str, Any] | None:
        try:
            record = json.loads(store.get(key).body)
        except ObjectNotFound:
            return None
        head, _ = Sequences(store, record["workspace_key"], settings.lease_secs).read()
        if head is None:
            return None
        return {"workspace_path": record["workspace_path"], "logical_repo_id": record["logical_repo_id"],
                "workspace_key": record["workspace_key"], "collection_name": head.collection_name,
                "last_sequence": head.last_sequence, "last_upload": head.last_upload,
                "pending": head.pending is not None}

    found = parallel_map(store, describe, keys)
    last = keys[-1][len(prefix):] if len(keys) >= page else ""
    return {"workspaces": [w for w in found if w is not None],
            "next_cursor": encode_cursor(last) if last else None}


def stored_file(
    store: ObjectStore, settings: Settings, tenant: str, path: str, logical_repo_id: str | None,
    file_path: str, start_line: int | None, end_line: int | None,
) -> dict[str, Any]:
    """Lines `start_line`-`end_line` (1-based, inclusive; default: all) of one file of the
    tree, at most FILE_MAX_KB of text (`truncated` says when more was asked for). The
    file is copied to scratch and read line by line, so a large one costs no memory. A
    first line longer than the budget answers its start (`truncated`), never nothing."""
    check_path(file_path, "path")
    if start_line is not None and end_line is not None and end_line < start_line:
        raise InvalidRequest("end_line must not be before start_line")
    ws, head = find_workspace(store, settings, tenant, path, logical_repo_id)
    if head is None:
        raise NotFound("no upload reached this workspace yet", code="WORKSPACE_NOT_FOUND")
    first, last = start_line or 1, end_line
    budget = settings.file_max_kb * 1024
    with tempfile.TemporaryDirectory(dir=store.scratch_dir) as scratch:
        local = Path(scratch) / "file"
        try:
            store.download(tree_key(ws, file_path), local)
        except ObjectNotFound:
            raise NotFound("the workspace holds no file at this path", code="FILE_NOT_FOUND") from None
        size = local.stat().st_size
        with local.open("rb") as handle:
            if b"\x00" in handle.read(SNIFF_BYTES):
                raise Unprocessable("the file is not text", code="FILE_NOT_TEXT")
            handle.seek(0)
            kept: list[bytes] = []
            used, number, last_kept, truncated, fresh = 0, 0, None, False, True
            # pieces of at most budget + 1 bytes: a line of any length costs no more memory
            while piece := handle.readline(budget + 1):
                number += fresh
                fresh = piece.endswith(b"\n")
                if number < first or (last is not None and number > last):
                    continue
                if used + len(piece) > budget:
                    truncated = True
                    if not kept:  # one line longer than the budget: its start, so a reader moves on
                        kept.append(piece[:budget])
                        last_kept = number
                    break
                kept.append(piece)
                used += len(piece)
                last_kept = number
    content = b"".join(kept).decode("utf-8", errors="replace")
    return {
        "workspace_path": path,
        "workspace_key": ws,
        "path": file_path,
        "size": size,
        "start_line": first,
        "end_line": last_kept,
        "total_lines": None if truncated else number,
        "content": content,
        "truncated": truncated,
    }


def encode_cursor(path: str) -> str:
    """A page's next cursor: the last key or path it held, opaque to clients."""
    return base64.urlsafe_b64encode(path.encode("utf-8")).decode("ascii")


def decode_cursor(cursor: str) -> str:
    if not cursor:
        return ""
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError):
        raise InvalidRequest("cursor is not one this service returned") from None
