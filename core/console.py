"""What the admin console shows: tenants, their workspaces, each with its head and journal.

Everything is read from storage on each request (as `core.views`), bounded: at most
`MAX_TENANTS` tenants, a page of `PAGE` workspaces, `JOURNAL_ENTRIES` journal entries
each. A tenant is named by the `tenant` field of its workspace records (written since
the console exists); a record from before names none, and the tenant shows as its
digest, which cannot be reversed, read-only (no action can name it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from core.admin import AdminScope
from core.errors import InvalidRequest
from core.keys import journal_key, tenant_workspaces_prefix
from core.models import UploadResult
from core.sequences import HeadRecord, Sequences
from core.storage import ObjectNotFound, ObjectStore
from core.views import decode_cursor, encode_cursor
from core.workspace import parallel_map

TENANTS = "tenants/"
MAX_TENANTS = 200
PAGE = 25
JOURNAL_ENTRIES = 5
CountPoints = Callable[[str, str], int | None]


@dataclass(frozen=True)
class TenantRow:
    digest: str
    tenant: str | None  # None: only records from before tenant ids were stored


@dataclass(frozen=True)
class JournalRow:
    sequence: int
    bundle_id: str
    committed_at: str
    operations: str  # "3 created, 1 deleted"
    failures: int


@dataclass(frozen=True)
class WorkspaceRow:
    tenant: str | None
    tenant_digest: str
    workspace_path: str
    logical_repo_id: str | None
    workspace_key: str
    collection_name: str
    last_sequence: int
    last_upload: str | None
    pending_bundle: str | None
    pending_sequence: int | None
    lease_expires_in_s: float | None
    indexed_points: int | None
    journal: list[JournalRow] = field(default_factory=list)


@dataclass(frozen=True)
class WorkspacePage:
    rows: list[WorkspaceRow]
    next_cursor: str | None


def tenant_digest(tenant: str) -> str:
    return tenant_workspaces_prefix(tenant)[len(TENANTS):].split("/", 1)[0]


def tenants(store: ObjectStore, scope: AdminScope) -> tuple[list[TenantRow], bool]:
    """The tenants that have workspaces (an admin: all of them, at most MAX_TENANTS; anyone
    else: their own), and whether the list was cut."""
    if not scope.all_tenants:
        return [TenantRow(tenant_digest(scope.tenant), scope.tenant)], False
    digests = sorted(store.list_folder(TENANTS).folders)
    cut = len(digests) > MAX_TENANTS
    return parallel_map(store, lambda d: TenantRow(d, _tenant_of(store, d)), digests[:MAX_TENANTS]), cut


def _tenant_of(store: ObjectStore, digest: str) -> str | None:
    """The tenant id of the first record under the digest that names one (and whose
    digest it is: a record cannot claim another tenant)."""
    prefix = f"{TENANTS}{digest}/workspaces/"
    for number, key in enumerate(store.list(prefix)):
        if number >= 3:
            break
        tenant = _record(store, key).get("tenant")
        if isinstance(tenant, str) and tenant_digest(tenant) == digest:
            return tenant
    return None


def workspace_page(store: ObjectStore, lease_secs: float, scope: AdminScope, digest: str | None,
                   cursor: str, count_points: CountPoints | None, limit: int = PAGE) -> WorkspacePage:
    """One page of workspaces: of the tenant `digest` names (an admin; default: every
    tenant), or of the caller's own tenant."""
    if not scope.all_tenants:
        digest = tenant_digest(scope.tenant)
    if digest is not None and (len(digest) != 16 or not all(c in "0123456789abcdef" for c in digest)):
        raise InvalidRequest("tenant must be a tenant digest from this page")
    prefix = f"{TENANTS}{digest}/workspaces/" if digest else TENANTS
    after = decode_cursor(cursor)
    if after and not after.startswith(prefix):
        raise InvalidRequest("cursor is not one this page returned")
    keys: list[str] = []
    for key in store.list(prefix, start_after=after):
        if key.endswith(".json") and "/workspaces/" in key:
            keys.append(key)
        if len(keys) >= limit:
            break
    rows = parallel_map(store, lambda key: _describe(store, lease_secs, key, count_points), keys)
    return WorkspacePage([row for row in rows if row is not None],
                         encode_cursor(keys[-1]) if len(keys) >= limit else None)


def _describe(store: ObjectStore, lease_secs: float, key: str, count_points: CountPoints | None
              ) -> WorkspaceRow | None:
    record = _record(store, key)
    ws = record.get("workspace_key")
    if not isinstance(ws, str):
        return None
    head, _ = Sequences(store, ws, lease_secs).read()
    if head is None:
        return None
    digest = key[len(TENANTS):].split("/", 1)[0]
    tenant = record.get("tenant")
    known = tenant if isinstance(tenant, str) and tenant_digest(tenant) == digest else None
    pending = head.pending
    points = count_points(head.collection_name, ws) if count_points is not None else None
    return WorkspaceRow(
        tenant=known, tenant_digest=digest, workspace_path=head.workspace_path,
        logical_repo_id=head.logical_repo_id, workspace_key=ws, collection_name=head.collection_name,
        last_sequence=head.last_sequence, last_upload=head.last_upload,
        pending_bundle=pending.bundle_id if pending else None,
        pending_sequence=pending.sequence if pending else None,
        lease_expires_in_s=round(pending.lease_expires_at - time.time(), 1) if pending else None,
        indexed_points=points, journal=journal(store, ws, head))


def journal(store: ObjectStore, ws: str, head: HeadRecord, entries: int = JOURNAL_ENTRIES
            ) -> list[JournalRow]:
    """The last `entries` journal entries, newest first: their keys follow from the head's
    sequence, so nothing is listed."""
    rows = []
    for sequence in range(head.last_sequence, max(0, head.last_sequence - entries), -1):
        try:
            result = UploadResult.model_validate_json(store.get(journal_key(ws, sequence)).body)
        except (ObjectNotFound, ValidationError):
            continue
        ops = result.processed_operations
        counts = [f"{n} {kind}" for kind, n in ops.model_dump().items() if n]
        rows.append(JournalRow(sequence, result.bundle_id, result.committed_at,
                               ", ".join(counts) or "nothing", len(result.failures)))
    return rows


def _record(store: ObjectStore, key: str) -> dict[str, object]:
    try:
        data = json.loads(store.get(key).body)
    except (ObjectNotFound, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


