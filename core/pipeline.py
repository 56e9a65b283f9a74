"""One bundle, start to finish: read, keep, claim, apply, commit.

    1 read    stream the upload to scratch (size-capped), then `core.bundle`
    2 keep    raw bundle -> bundles/<ws>/<bundle_id>.tar.gz, write-once
    3 claim   `core.sequences`: next number, or duplicate / busy / stalled
    4 plan    `core.workspace.make_plan`, stored write-once with the claim
    5 index   `core.indexing`: Qdrant brought in line with the plan, from the
              staged bytes (so nothing is read back from storage), and the new
              commits of the bundle's git history indexed; while the collection
              is being rebuilt (`core.reindex`), in the new collection as well
    6 apply   `core.workspace.execute`: copies, writes, deletes on the tree; the
              bundle's git history, if any, stored commit by commit (`core.history`)
    7 commit  journal entry, result record, then the head (the commit point)

Each step is keyed by bundle id and safe to repeat, so a client retry, a
redelivered event or an instance that died part-way all converge on the state
of one clean run. A stalled claim (expired lease) is finished by replaying its
raw bundle from storage before the next bundle is claimed. Every write of steps
4-7 goes through the claim's `core.fence.Fence`, so an instance that lost its
lease writes nothing more (503 LEASE_LOST) and cannot undo a taker's work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from core import metrics
from core.bundle import Bundle, BundleLimits, open_bundle
from core.config import Settings
from core.errors import (
    BundleIdConflict,
    BundleTooLarge,
    DeltaError,
    InvalidBundle,
    ProcessingError,
    WorkspaceBusy,
    WorkspaceDeleting,
    concerning,
    disk_full_is_retryable,
)
from core.faults import Faults
from core.fence import Fence
from core.history import store_commits
from core.indexing.indexer import Indexer
from core.indexing.sync import IndexTarget
from core.keys import (
    alias_key,
    journal_key,
    plan_key,
    raw_bundle_key,
    result_key,
    stash_prefix,
    tenant_workspace_key,
    workspace_key,
)
from core.models import HistoryStats, IndexingStats, UploadRequest, UploadResult
from core.names import stored_collection
from core.reindex import Reindexing
from core.sequences import (
    BundleClaim,
    Busy,
    Claimed,
    Duplicate,
    LeaseLost,
    PendingBundle,
    Sequences,
    Stalled,
    utc_now,
)
from core.storage import Expect, ObjectNotFound, ObjectStore, PreconditionFailed
from core.workspace import ApplyPlan, execute, make_plan, read_before, stash_sources

log = logging.getLogger(__name__)
SPOOL_CHUNK = 1024 * 1024
BUSY_POLL_SECS = 0.2


@contextmanager
def spooled(stream: IO[bytes], scratch: Path, limit: int) -> Iterator[tuple[Path, str]]:
    """Copy an upload to a scratch file, refusing it as soon as it passes `limit`."""
    with disk_full_is_retryable("scratch folder"):
        fd, name = tempfile.mkstemp(prefix="raw-", suffix=".tar.gz", dir=scratch)
    path = Path(name)
    digest = hashlib.sha1()
    size = 0
    try:
        with disk_full_is_retryable("scratch folder"), os.fdopen(fd, "wb") as handle:
            while chunk := stream.read(SPOOL_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise BundleTooLarge(f"bundle exceeds MAX_BUNDLE_SIZE_MB ({limit // 2**20} MB)")
                digest.update(chunk)
                handle.write(chunk)
        yield path, digest.hexdigest()
    finally:
        path.unlink(missing_ok=True)


class Laps:
    """Wall time of consecutive pipeline steps, in milliseconds."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, step: str) -> None:
        now = time.monotonic()
        self.ms[step] = round(self.ms.get(step, 0.0) + (now - self._last) * 1000, 2)
        self._last = now


class Pipeline:
    """Processes bundles against one store; stateless between calls."""

    def __init__(self, settings: Settings, store: ObjectStore, indexer: Indexer | None,
                 rebuilds: Callable[[str], str | None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.indexer = indexer
        # the collection a reindex builds for a served one, if any (`core.reindex`)
        self.rebuilds = rebuilds or Reindexing(settings, store, indexer).building_target
        self.faults = Faults.parse(settings.fault_injection)
        self.limits = BundleLimits(
            max_uncompressed_bytes=settings.max_uncompressed_bytes,
            max_members=settings.max_bundle_members,
            max_metadata_bytes=settings.max_metadata_bytes,
        )

    def upload(self, request: UploadRequest, stream: IO[bytes],
               expected_bundle_id: str | None = None) -> UploadResult:
        """Process one bundle; `expected_bundle_id` pins the id a direct upload announced."""
        started = time.monotonic()
        laps = Laps()
        scratch = self.store.scratch_dir
        with (
            spooled(stream, scratch, self.settings.max_bundle_bytes) as (raw, raw_sha1),
            open_bundle(raw, scratch, self.limits) as bundle,
            concerning(bundle.bundle_id),
        ):
            metrics.BYTES_RECEIVED.inc(raw.stat().st_size)
            laps.lap("read")
            if expected_bundle_id is not None and bundle.bundle_id != expected_bundle_id:
                raise InvalidBundle("the manifest's bundle_id is not the one this upload URL was issued for",
                                    code="BUNDLE_ID_MISMATCH")
            ws = workspace_key(request.tenant, request.workspace_path, request.logical_repo_id)
            # the request's name, else the manifest's, checked alike (core.names), before anything is written
            collection = stored_collection(request.tenant, request.collection_name
                                           or bundle.manifest.collection_name
                                           or self.settings.collection_name)
            claim = BundleClaim(
                bundle_id=bundle.bundle_id,
                operations=len(bundle.operations),
                collection_name=collection,
                workspace_path=request.workspace_path,
                logical_repo_id=request.logical_repo_id,
                requested_sequence=request.sequence_number or bundle.manifest.sequence_number,
                force=request.force,
                source_path=request.source_path,
            )
            Sequences(self.store, ws, self.settings.lease_secs).precheck(claim)
            if self.indexer is not None:
                self.indexer.prepare(collection)
            laps.lap("prepare")
            kept = self._keep(ws, bundle.bundle_id, raw, raw_sha1)
            self.faults.at("after_keep", bundle.bundle_id)
            laps.lap("keep")
            try:
                result = self._claim_and_apply(ws, claim, bundle, started, laps,
                                               rekeep=lambda: self._keep(ws, bundle.bundle_id, raw, raw_sha1))
            except WorkspaceDeleting:
                if kept:  # core.deletion: kept after the deleter listed bundles/, it would stay behind
                    self.store.delete(raw_bundle_key(ws, bundle.bundle_id))
                raise
            self._remember_alias(request, ws)
            self._register(request, ws)
            return result

    def _keep(self, ws: str, bundle_id: str, raw: Path, raw_sha1: str) -> bool:
        """Store the raw bundle write-once; whether this call wrote it."""
        key = raw_bundle_key(ws, bundle_id)
        if self.store.put_file_if_absent(key, raw, raw_sha1):
            return True
        kept = self.store.head(key)
        if kept is not None and kept.sha1 is not None and kept.sha1 != raw_sha1:
            raise BundleIdConflict("a different bundle was already uploaded with this bundle_id")
        return False

    def _remember_alias(self, request: UploadRequest, ws: str) -> None:
        """The path's latest workspace, whatever identity it came with: written once the
        bundle is committed (a refused bundle moves nothing), read by status, manifest,
        search and the bridge when they are given a path alone."""
        body = json.dumps({"workspace_key": ws}).encode()
        self.store.put(alias_key(request.tenant, request.workspace_path), body)

    def _register(self, request: UploadRequest, ws: str) -> None:
        """The tenant's list of workspaces (`views.list_workspaces`) names this one: a
        record written once, by the first committed upload that finds it missing (one
        conditional write per upload, refused once it exists)."""
        key = tenant_workspace_key(request.tenant, ws)
        body = json.dumps({"format": 1, "workspace_path": request.workspace_path,
                           "logical_repo_id": request.logical_repo_id, "workspace_key": ws,
                           "tenant": request.tenant}).encode()  # tenant: for the admin console
        with contextlib.suppress(PreconditionFailed):
            self.store.put_if_absent(key, body)
            self._unregister_if_deleted(request, ws, key)

    def _unregister_if_deleted(self, request: UploadRequest, ws: str, record: str) -> None:
        """A record this upload wrote new may have landed after a deletion of the workspace
        removed it (`core.deletion`, which deletes the record before the alias): if the head
        is gone or a tombstone, the record and the alias go again. One read per workspace."""
        head, _ = Sequences(self.store, ws, self.settings.lease_secs).read()
        if head is not None and head.deletion is None:
            return
        self.store.delete(record)
        key = alias_key(request.tenant, request.workspace_path)
        with contextlib.suppress(ObjectNotFound, PreconditionFailed):
            alias = self.store.get(key)
            if json.loads(alias.body).get("workspace_key") == ws:
                self.store.delete(key, expect=Expect(alias.etag))

    def _claim_and_apply(
        self, ws: str, claim: BundleClaim, bundle: Bundle, started: float, laps: Laps,
        rekeep: Callable[[], object] | None = None,
    ) -> UploadResult:
        sequences = Sequences(self.store, ws, self.settings.lease_secs)
        deadline = time.monotonic() + self.settings.claim_wait_secs
        while True:
            outcome = sequences.claim(claim)
            if isinstance(outcome, Duplicate):
                self._remove_plan(ws, claim.bundle_id)  # left behind if the committer died
                result = outcome.result.model_copy(update={"duplicate": True})
                _report(result, {}, duplicate=True)
                return result
            if isinstance(outcome, Claimed):
                # a workspace started anew: a deletion may have removed the raw bundle kept
                # before it finished (`core.deletion`), and a replay needs it
                if (rekeep is not None and outcome.pending.sequence == 1 and not outcome.resumed
                        and self.store.head(raw_bundle_key(ws, claim.bundle_id)) is None):
                    rekeep()
                laps.lap("claim")
                return self._apply(sequences, outcome, bundle, started, claim, laps)
            if isinstance(outcome, Stalled):
                taken = self.replay(sequences, outcome.pending)
                if taken:
                    continue
                outcome = Busy(outcome.pending)  # its owner holds the workspace's lock: wait
            assert isinstance(outcome, Busy)
            if time.monotonic() >= deadline:
                wait = max(1, int(outcome.pending.lease_expires_at - time.time()) + 1)
                raise WorkspaceBusy(
                    "another upload to this workspace is in progress",
                    retry_after_s=min(wait, 30),
                )
            time.sleep(BUSY_POLL_SECS)

    def replay(self, sequences: Sequences, stalled: PendingBundle) -> bool:
        """Finish a bundle whose instance died, from its raw bundle in storage; False if
        it could not be taken over after all (its owner is writing: filesystem lock)."""
        log.warning("replaying stalled bundle %s (sequence %s)", stalled.bundle_id, stalled.sequence)
        head, _ = sequences.read()
        assert head is not None
        claim = BundleClaim(
            bundle_id=stalled.bundle_id,
            operations=stalled.operations,
            collection_name=stalled.collection_name,
            workspace_path=head.workspace_path,
            logical_repo_id=head.logical_repo_id,
            requested_sequence=None,
            force=True,
            source_path=stalled.source_path,
        )
        scratch = self.store.scratch_dir
        with disk_full_is_retryable("scratch folder"):
            fd, name = tempfile.mkstemp(prefix="replay-", suffix=".tar.gz", dir=scratch)
        os.close(fd)
        raw = Path(name)
        try:
            try:
                self.store.download(raw_bundle_key(sequences.ws, stalled.bundle_id), raw)
            except ObjectNotFound:
                raise ProcessingError("the raw bundle of a claimed sequence is missing") from None
            with open_bundle(raw, scratch, self.limits) as bundle:
                outcome = sequences.claim(claim)
                if isinstance(outcome, Claimed):
                    self._apply(sequences, outcome, bundle, time.monotonic(), claim, Laps())
                return not isinstance(outcome, Busy)
        finally:
            raw.unlink(missing_ok=True)

    def _apply(
        self,
        sequences: Sequences,
        claimed: Claimed,
        bundle: Bundle,
        started: float,
        claim: BundleClaim,
        laps: Laps,
    ) -> UploadResult:
        ws = sequences.ws
        mine = claimed.pending
        fence = Fence(sequences, claimed, max(self.store.request_bound_secs,
                                              self.settings.qdrant_request_bound if self.indexer else 0.0))
        faults = self.faults

        def checkpoint(point: str) -> None:
            faults.at(point, bundle.bundle_id)

        try:
            faults.at("after_claim", bundle.bundle_id)
            plan = self._plan(ws, bundle, fence)
            faults.at("after_plan", bundle.bundle_id)
            laps.lap("plan")
            indexing, history = None, None
            commits = bundle.history.commits if bundle.history is not None else None
            if self.indexer is not None:
                served = self.indexer.prepare(mine.collection_name)  # resolved after the claim
                target = IndexTarget(
                    collection=served.physical,
                    workspace=ws,
                    repo=claim.logical_repo_id or ws.rsplit("-", 1)[0],
                    bundle_id=bundle.bundle_id,
                    sequence=mine.sequence,
                    host_root=mine.source_path,
                )
                indexer = self.indexer
                max_bytes = indexer.max_file_bytes

                def index(into: IndexTarget) -> IndexingStats:
                    return indexer.index(
                        into, plan, bundle,
                        before=lambda paths: read_before(self.store, ws, plan, paths, max_bytes),
                        fence=fence.qdrant, checkpoint=checkpoint)

                indexing = index(target)
                if commits:
                    history = HistoryStats(indexed=indexer.index_commits(target, commits, fence.qdrant))

                def rebuilt(into: IndexTarget) -> None:
                    index(into)
                    if commits:
                        indexer.index_commits(into, commits, fence.qdrant)

                self._into_rebuild(mine.collection_name, target, rebuilt)
            faults.at("after_index", bundle.bundle_id)
            laps.lap("index")
            execute(self.store, ws, plan, bundle, fence,
                    batch_files=self.settings.apply_batch_files, checkpoint=checkpoint)
            if commits is not None:
                history = (history or HistoryStats()).model_copy(update={
                    "commits": len(commits), "stored": store_commits(self.store, ws, commits, fence)})
            faults.at("after_apply", bundle.bundle_id)
            laps.lap("apply")
            result = UploadResult(
                bundle_id=bundle.bundle_id,
                workspace_path=claim.workspace_path,
                workspace_key=ws,
                collection_name=mine.collection_name,
                sequence_number=mine.sequence,
                next_sequence=mine.sequence + 1,
                processed_operations=plan.processed,
                failures=plan.failures,
                indexing=indexing,
                git_history=history,
                timings_ms=dict(laps.ms),
                processing_time_ms=_elapsed_ms(started),
                committed_at=utc_now(),
            )
            result = self._commit(sequences, fence, result, plan)
            laps.lap("commit")
        except BaseException as exc:
            _release_quietly(sequences, fence.pending)  # only while the head still names us
            lost = exc if isinstance(exc, LeaseLost) else _lost_meanwhile(sequences, fence, exc)
            if lost is None:
                raise
            log.warning("bundle %s: lease lost, stopped writing: %s", bundle.bundle_id, lost.message)
            if lost is exc:
                raise
            raise lost from exc
        _report(result, laps.ms, duplicate=False)
        # the stored result was written by the commit, so only this answer can time it
        return result.model_copy(update={"timings_ms": dict(laps.ms),
                                         "processing_time_ms": _elapsed_ms(started)})

    def _into_rebuild(self, collection: str, serving: IndexTarget,
                      write: Callable[[IndexTarget], None]) -> None:
        """While `collection` is being rebuilt, the bundle's points go into the new
        collection too (read after the claim: see `core.reindex`). A rebuild that ended
        meanwhile (aborted: its collection dropped) is no failure of this upload."""
        building = self.rebuilds(collection)
        if building is None or building == serving.collection:
            return
        try:
            write(dataclasses.replace(serving, collection=building))
        except Exception:
            if self.rebuilds(collection) == building:
                raise
            log.info("the rebuild of %s ended during this upload; its collection was left alone", collection)

    def _plan(self, ws: str, bundle: Bundle, fence: Fence) -> ApplyPlan:
        """The stored plan of this bundle, or a new one stored write-once (a taker's
        stored first stands: both then apply the same plan)."""
        key = plan_key(ws, bundle.bundle_id)
        try:
            return ApplyPlan.model_validate_json(self.store.get(key).body)
        except ObjectNotFound:
            pass
        plan = make_plan(self.store, ws, bundle, fence.pending.owner)
        self.faults.at("mid_plan", bundle.bundle_id)
        stash_sources(self.store, ws, plan, fence)
        with fence.section():
            stored = fence.put_once(key, plan.model_dump_json().encode(), lambda _: True)
        return ApplyPlan.model_validate_json(stored)

    def _commit(self, sequences: Sequences, fence: Fence, result: UploadResult,
                plan: ApplyPlan) -> UploadResult:
        """Journal, result, head. A journal or result a taker wrote first for this same
        bundle stands, and is the answer (the head then says it is committed)."""
        ws = sequences.ws
        mine = fence.pending
        bundle_id = result.bundle_id

        def same(body: bytes) -> bool:
            stored = UploadResult.model_validate_json(body)
            return stored.bundle_id == bundle_id and stored.sequence_number == mine.sequence

        with fence.section():
            body = fence.put_once(journal_key(ws, mine.sequence),
                                  result.model_dump_json(indent=1).encode(), same)
        self.faults.at("after_journal", bundle_id)
        with fence.section():
            fence.put_once(result_key(ws, bundle_id), body, same)
        self.faults.at("after_result", bundle_id)
        result = UploadResult.model_validate_json(body)
        sequences.commit(mine, result.committed_at)
        self.faults.at("after_commit", bundle_id)
        # stashes of another claim can exist only if this bundle was taken over
        self._remove_plan(ws, bundle_id, stashes=bool(plan.stashed) or mine.attempt > 1)
        return result

    def _remove_plan(self, ws: str, bundle_id: str, stashes: bool = True) -> None:
        """Best effort once committed: a left-over plan or stash is only clutter. With
        `stashes`, every claim's stashes of the bundle go, also a lost lease's."""
        try:
            found = list(self.store.list(stash_prefix(ws, bundle_id))) if stashes else []
            for key in [*found, plan_key(ws, bundle_id)]:
                self.store.delete(key)
        except Exception:
            log.warning("could not remove the plan of bundle %s", bundle_id, exc_info=True)


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _report(result: UploadResult, timings_ms: dict[str, float], duplicate: bool) -> None:
    """One log line and the metrics of a processed bundle."""
    metrics.record_bundle(result.processed_operations, result.indexing, timings_ms, duplicate)
    log.info(
        "bundle %s %s as sequence %s", result.bundle_id,
        "was already applied" if duplicate else "applied", result.sequence_number,
        extra={"bundle_id": result.bundle_id, "workspace": result.workspace_key,
               "sequence": result.sequence_number, "duplicate": duplicate,
               "operations": result.processed_operations.model_dump(),
               "timings_ms": timings_ms,
               "indexing": result.indexing.model_dump() if result.indexing else None},
    )


def report_refusal(error: DeltaError) -> None:
    """One log line and the metric of a bundle that was not applied: which rule refused
    it (code and message) and, once its manifest was read, which bundle it was."""
    server_side = error.http_status >= 500
    metrics.record_refusal(error.code, server_side)
    log.warning("upload %s: %s: %s", "failed" if server_side else "refused", error.code, error.message,
                extra={"error_code": error.code, "error_message": error.message,
                       "bundle_id": error.bundle_id, "http_status": error.http_status})


def _lost_meanwhile(sequences: Sequences, fence: Fence, error: BaseException) -> LeaseLost | None:
    """A failure of an instance whose claim was taken over meanwhile (a copy whose
    source the taker already moved, say) is that: LEASE_LOST, not a 500."""
    if not isinstance(error, Exception) or isinstance(error, DeltaError):
        return None
    try:
        if sequences.owns(fence.pending):
            return None
    except Exception:  # storage cannot tell: the original error stands
        return None
    return LeaseLost("another instance took this bundle over", retry_after_s=1)


def _release_quietly(sequences: Sequences, pending: PendingBundle) -> None:
    """Best effort, while the error that ended the apply is being raised: that error is
    what the client is told, never this one. If the head cannot be written either (the
    disk that just filled up, say), the claim keeps its lease until it expires, and the
    next attempt then takes the bundle over."""
    try:
        sequences.release(pending)
    except Exception:  # the lease then simply expires
        log.warning("could not release the lease of bundle %s", pending.bundle_id, exc_info=True)
