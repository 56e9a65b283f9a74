"""Deleting a workspace, or every workspace of a collection and the collection itself.

A deletion first takes the workspace's head as a claim taker would: it writes a
tombstone (`HeadRecord.deletion`, a lease of its own) by compare-and-swap, only
while no live claim is pending, or once a pending claim's lease and grace ran
out, so that the upload's own fence stops it (it no longer owns the head). Then:

    1 points   every Qdrant point of the workspace, in every collection its
               bundles went to (`Indexer.delete_workspace_points`)
    2 objects  everything under workspaces/<ws>/ but the head, bundles/<ws>/
               and incoming/<ws>/
    3 pointers the tenant's workspace record, then the path aliases naming <ws>
    4 sweep    step 2 again: what a racing upload kept before it met the tombstone
    5 head     removed last, against the etag just read

While the tombstone stands, uploads answer 409 WORKSPACE_DELETING and status says
`"status": "deleting"`. Every write of steps 1-5 is fenced like a claim's
(`core.fence`): on the filesystem in sections holding the head's lock shared that
start by checking the tombstone still names this deleter; on S3 admitted only
inside the deleter's lease. So a deleter that froze and was taken over deletes
nothing of the workspace a later upload starts anew. An interrupted deletion
leaves its tombstone: the next DELETE (any instance) takes it over once its lease
expired and finishes; after step 5 a new upload starts the workspace at sequence 1.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import suppress

from pydantic import BaseModel

from core.config import Settings
from core.errors import WorkspaceBusy
from core.faults import Faults
from core.fence import Lease
from core.indexing.indexer import Indexer
from core.keys import alias_key, head_key, tenant_workspace_key, tenant_workspaces_prefix
from core.models import UploadResult
from core.names import stored_collection
from core.sequences import (
    Deletion,
    HeadRecord,
    Sequences,
    Tombstoned,
)
from core.storage import Expect, ObjectNotFound, ObjectStore, PreconditionFailed
from core.views import find_workspace
from core.workspace import parallel_map

log = logging.getLogger(__name__)
BATCH = 200  # keys deleted per fenced section
BUSY_POLL_SECS = 0.2


class WorkspaceDeletion(BaseModel):
    """What one workspace's deletion removed. `deleted` is false when there was nothing
    to delete (no such workspace, or another deletion finished it meanwhile)."""

    deleted: bool
    workspace_key: str
    workspace_path: str
    logical_repo_id: str | None = None
    collection_name: str | None = None  # the stored (tenant-qualified) name of its head
    resumed: bool = False  # an interrupted deletion was taken over and finished
    objects_removed: int = 0
    points_removed: int = 0


class CollectionDeletion(BaseModel):
    """What a collection's deletion removed: its workspaces, then the collection."""

    deleted: bool
    collection_name: str
    collection_dropped: bool
    workspaces: list[WorkspaceDeletion]
    objects_removed: int
    points_removed: int


def workspace_prefixes(ws: str) -> tuple[str, ...]:
    """Every key prefix that holds objects of workspace `ws` (the head lies in the first)."""
    return f"workspaces/{ws}/", f"bundles/{ws}/", f"incoming/{ws}/"


class Deleter:
    """Deletes workspaces and collections of a tenant; stateless between calls."""

    def __init__(self, settings: Settings, store: ObjectStore, indexer: Indexer | None,
                 rebuilds: Callable[[str], str | None] = lambda collection: None) -> None:
        self.settings = settings
        self.store = store
        self.indexer = indexer
        # the collection a reindex builds for a served one, if any (`core.reindex`): the
        # workspace's points go there too, or the switch would bring them back
        self.rebuilds = rebuilds
        self.faults = Faults.parse(settings.fault_injection)

    def delete_workspace(self, tenant: str, workspace_path: str,
                         logical_repo_id: str | None) -> WorkspaceDeletion:
        """The workspace status would show for this path and repo id (with a path alone,
        the one the path's latest upload went to), deleted wholly."""
        ws, _ = find_workspace(self.store, self.settings, tenant, workspace_path, logical_repo_id)
        return self._delete(tenant, ws, workspace_path, logical_repo_id)

    def delete_collection(self, tenant: str, collection_name: str) -> CollectionDeletion:
        """Every workspace of the tenant whose head names the collection, then the collection."""
        stored = stored_collection(tenant, collection_name)  # checked: INVALID_COLLECTION
        removed = [self._delete(tenant, ws, path, repo_id)
                   for ws, path, repo_id in self._workspaces_of(tenant, stored)]
        dropped = self.indexer.drop_collection(stored) if self.indexer is not None else False
        done = [r for r in removed if r.deleted]
        result = CollectionDeletion(
            deleted=dropped or bool(done), collection_name=collection_name, collection_dropped=dropped,
            workspaces=removed, objects_removed=sum(r.objects_removed for r in removed),
            points_removed=sum(r.points_removed for r in removed))
        log.info("collection %s deleted (%d workspaces)", stored, len(done), extra={
            "audit": "delete_collection", "tenant": tenant, "collection": stored,
            "workspaces": [r.workspace_key for r in done], "collection_dropped": dropped,
            "objects_removed": result.objects_removed, "points_removed": result.points_removed})
        return result

    def _workspaces_of(self, tenant: str, collection: str) -> list[tuple[str, str, str | None]]:
        """(key, path, repo id) of the tenant's workspaces whose head names `collection`."""
        keys = list(self.store.list(tenant_workspaces_prefix(tenant)))

        def named(key: str) -> tuple[str, str, str | None] | None:
            try:
                record = json.loads(self.store.get(key).body)
            except ObjectNotFound:
                return None
            ws = record["workspace_key"]
            head, _ = Sequences(self.store, ws, self.settings.lease_secs).read()
            if head is None or head.collection_name != collection:
                return None
            return ws, record["workspace_path"], record.get("logical_repo_id")

        return [found for found in parallel_map(self.store, named, keys) if found is not None]

    # one workspace ----------------------------------------------------------
    def _delete(self, tenant: str, ws: str, path: str, repo_id: str | None) -> WorkspaceDeletion:
        sequences = Sequences(self.store, ws, self.settings.lease_secs)
        taken = self._tombstone(sequences)
        if taken is None:
            log.info("workspace %s: nothing to delete", ws, extra={
                "audit": "delete_workspace", "tenant": tenant, "workspace": ws, "workspace_path": path,
                "logical_repo_id": repo_id, "deleted": False, "objects_removed": 0, "points_removed": 0})
            return WorkspaceDeletion(deleted=False, workspace_key=ws, workspace_path=path,
                                     logical_repo_id=repo_id)
        head = taken.head
        in_flight = max(self.store.request_bound_secs,
                        self.settings.qdrant_request_bound if self.indexer else 0.0)
        lease = DeletionLease(sequences, taken, in_flight)
        points = self._delete_points(ws, head, lease)
        objects = self._delete_objects(ws, lease)
        objects += self._delete_pointers(tenant, ws, {path, head.workspace_path}, lease)
        objects += self._delete_objects(ws, lease)
        if not self.store.fences_with_locks:
            lease.admit()
        sequences.remove(lease.deletion)
        result = WorkspaceDeletion(
            deleted=True, workspace_key=ws, workspace_path=head.workspace_path,
            logical_repo_id=head.logical_repo_id, collection_name=head.collection_name,
            resumed=taken.resumed, objects_removed=objects + 1, points_removed=points)
        log.info("workspace %s deleted", ws, extra={
            "audit": "delete_workspace", "tenant": tenant, "workspace": ws,
            "workspace_path": head.workspace_path, "logical_repo_id": head.logical_repo_id,
            "collection": head.collection_name, "resumed": taken.resumed, "deleted": True,
            "objects_removed": result.objects_removed, "points_removed": points})
        return result

    def _tombstone(self, sequences: Sequences) -> Tombstoned | None:
        """The head as this deleter's tombstone, or None if there is no head. A live claim
        or deleter is waited for up to CLAIM_WAIT_SECS, as an upload waits, then 503."""
        deadline = time.monotonic() + self.settings.claim_wait_secs
        while True:
            outcome = sequences.begin_deletion()
            if outcome is None or isinstance(outcome, Tombstoned):
                return outcome
            if time.monotonic() >= deadline:
                wait = max(1, int(outcome.lease_expires_at - time.time()) + 1)
                raise WorkspaceBusy("an upload or another deletion of this workspace is in progress",
                                    retry_after_s=min(wait, 30))
            time.sleep(BUSY_POLL_SECS)

    def _delete_points(self, ws: str, head: HeadRecord, lease: DeletionLease) -> int:
        """The workspace's points in every collection one of its bundles was indexed in."""
        if self.indexer is None:
            return 0
        indexer = self.indexer
        collections = self._collections(ws, head)
        collections |= {built for c in collections if (built := self.rebuilds(c)) is not None}
        return sum(indexer.delete_workspace_points(collection, ws, lease.qdrant)
                   for collection in sorted(collections))

    def _collections(self, ws: str, head: HeadRecord) -> set[str]:
        journal = list(self.store.list(f"workspaces/{ws}/journal/"))

        def collection_of(key: str) -> str | None:
            try:
                return UploadResult.model_validate_json(self.store.get(key).body).collection_name
            except ObjectNotFound:
                return None

        return {head.collection_name} | {c for c in parallel_map(self.store, collection_of, journal) if c}

    def _delete_objects(self, ws: str, lease: DeletionLease) -> int:
        """Every key of the workspace but its head, a batch per fenced section."""
        head = head_key(ws)
        keys = [key for prefix in workspace_prefixes(ws) for key in self.store.list(prefix) if key != head]

        def delete(key: str) -> None:
            lease.admit()
            self.store.delete(key)

        for start in range(0, len(keys), BATCH):
            with lease.section():
                parallel_map(self.store, delete, keys[start : start + BATCH])
            self.faults.at("mid_delete", ws)
        return len(keys)

    def _delete_pointers(self, tenant: str, ws: str, paths: set[str], lease: DeletionLease) -> int:
        """The tenant's record of the workspace, then each path's alias if it names `ws`
        (an alias rewritten meanwhile names another upload's workspace: it stays). In this
        order, an upload that finds the record still there wrote its alias before this."""
        removed = 0
        with lease.section():
            lease.admit()
            record = tenant_workspace_key(tenant, ws)
            if self.store.head(record) is not None:
                self.store.delete(record)
                removed += 1
            for key in sorted({alias_key(tenant, path) for path in paths}):
                try:
                    alias = self.store.get(key)
                except ObjectNotFound:
                    continue
                if json.loads(alias.body).get("workspace_key") != ws:
                    continue
                lease.admit()
                with suppress(PreconditionFailed):
                    self.store.delete(key, expect=Expect(alias.etag))
                    removed += 1
        return removed


class DeletionLease(Lease):
    """The deleter's tombstone lease, and the fence of its writes (as `core.fence.Fence`
    is a claim's): sections on the filesystem, the lease deadline on S3."""

    holder = "deletion"

    def __init__(self, sequences: Sequences, taken: Tombstoned, in_flight_secs: float) -> None:
        self.deletion: Deletion = taken.deletion
        super().__init__(sequences, taken.granted_at, in_flight_secs)

    def _renew(self) -> None:
        self.deletion = self.sequences.renew_deletion(self.deletion)

    def _holds(self) -> bool:
        return self.sequences.deleting(self.deletion)
