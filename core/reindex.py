"""Rebuilding a collection from the stored trees, while it keeps serving.

A job (`reindex/<hex>.json`, one per served collection, compare-and-swap) builds
a new physical collection with the running layout from every workspace of the
collection, then switches the collection's alias to it in one atomic step
(`IndexEngine.switch_alias`); the old physical collection is dropped once no
request that resolved it can still be running. Searches read the old one
until the switch and the new one after it.

    building   workspaces in key order; each one's tree in byte order, a batch of
               files at a time, then its commit records. The job records the
               workspace and the last path done after every batch (the cursor)
    switching  every workspace is done: the alias is switched, then the job says done
    done | aborted | failed

Uploads meanwhile. Every upload reads the job after its claim: while one is
building or switching, its index step writes the serving collection and the
new one (`Pipeline`), so a workspace the job has done stays in line. A batch
is read from the tree and written only while no upload of its workspace can
run: the head is read before (no pending claim: else the job waits for it) and
after the batch, and if it changed meanwhile the batch is done again (an upload
may have indexed a file the batch then overwrote with older bytes); its paths'
points are cleared first. An upload claimed before the job existed holds its
claim when the job reaches its workspace, so it is waited for.

Any instance continues a job whose lease expired (`POST /api/v1/admin/reindex`
again, or the scheduled `gc` run), from its cursor: writes are by point id and
replace whole paths, so a batch done twice leaves what one run leaves. An
instance that stalls past its lease writes nothing more (`_LeasedEngine`), and
its next save of the job fails, as another instance owns it. Abort marks the
job aborted and drops the new collection; the serving one is never touched.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, computed_field

from core import metrics
from core.bundle import StagedFile
from core.config import Settings
from core.errors import Conflict, DeltaError, InvalidRequest, NotFound, Unavailable
from core.faults import Faults
from core.fence import guard_writes
from core.history import RECORD_FORMAT
from core.indexing.engines import IndexEngine
from core.indexing.indexer import Indexer
from core.indexing.sync import IndexTarget
from core.keys import commits_prefix, reindex_job_key, reindex_prefix, tree_prefix
from core.models import GitCommit
from core.names import check_collection_name, split_collection, stored_collection
from core.sequences import GRACE_FRACTION, HeadRecord, Sequences, lease_clock, utc_now
from core.storage import ObjectNotFound, ObjectStore, PreconditionFailed
from core.storage.base import sha1_of_file
from core.workspace import ApplyPlan, Write, parallel_map

log = logging.getLogger(__name__)

FORMAT = 1
BATCH_FILES = 256  # files read and indexed between two looks at the head (at most)
COMMITS_PER_BATCH = 256
WAIT_POLL_SECS = 0.2
RETRIES = 30  # of a background run whose dependency (storage, Qdrant) is unavailable


class JobState(StrEnum):
    BUILDING = "building"
    SWITCHING = "switching"
    DONE = "done"
    ABORTED = "aborted"
    FAILED = "failed"


ACTIVE = (JobState.BUILDING, JobState.SWITCHING)


class ReindexJob(BaseModel):
    """`reindex/<hex>.json`: one collection's rebuild, and how far it got."""

    model_config = ConfigDict(frozen=True)

    format: int = FORMAT
    job_id: str
    tenant: str
    collection_name: str  # as its tenant names it
    stored_collection: str  # the served name (the alias)
    state: JobState
    serving: str | None  # the physical collection served when the job began
    target: str  # the physical collection being built
    built_with: dict[str, Any]
    reasons: list[str]
    workspaces: list[str]
    workspaces_done: int = 0
    cursor: str = ""  # the last tree key done in workspaces[workspaces_done]
    commits_phase: bool = False  # the tree of that workspace is done: its commits now
    dirty: list[str] = []  # paths of a batch an upload overlapped: cleared before they count as done
    files_done: int = 0
    points_written: int = 0
    commits_done: int = 0
    batches_redone: int = 0
    waiting_for: str | None = None  # a workspace whose pending upload holds the job up
    owner: str | None = None
    lease_expires_at: float = 0.0
    started_at: str
    updated_at: str
    finished_at: str | None = None
    retire_after: float | None = None  # when the collection it replaced may be dropped
    retired: bool = False
    error: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def workspaces_total(self) -> int:
        return len(self.workspaces)

    def public(self) -> dict[str, Any]:
        """What the API, status and the console show (no lease internals)."""
        shown = self.model_dump(mode="json", exclude={"format", "owner", "lease_expires_at", "workspaces",
                                                      "cursor", "commits_phase", "retire_after", "retired",
                                                      "dirty"})
        shown["lease_expires_in_s"] = round(max(0.0, self.lease_expires_at - time.time()), 1)
        return shown


class CollectionState(BaseModel):
    """A served collection as an operator sees it: what built it, drift, its job."""

    tenant: str
    collection_name: str
    stored_collection: str
    serving: str | None
    points: int | None
    built_with: dict[str, Any]
    drift: list[str]
    job: ReindexJob | None

    def public(self) -> dict[str, Any]:
        shown = self.model_dump(mode="json", exclude={"job"})
        shown["needs_reindex"] = bool(self.drift)
        shown["reindex"] = self.job.public() if self.job else None
        return shown


class JobLost(Unavailable):
    """Another instance took the job over, or it was aborted: this one stops."""

    code = "REINDEX_LEASE_LOST"


@dataclass
class _Run:
    """One instance's hold on a job: the job as last written, its etag, its deadline."""

    job: ReindexJob
    etag: str
    expires: float  # on `lease_clock`
    batch_files: int = BATCH_FILES  # smaller after a batch an upload overlapped, so one fits between uploads


class Reindexing:
    """Starts, runs, continues and aborts rebuilds; tells what each collection needs."""

    def __init__(self, settings: Settings, store: ObjectStore, indexer: Indexer | None) -> None:
        self.settings = settings
        self.store = store
        self.indexer = indexer
        self.faults = Faults.parse(settings.fault_injection)
        self.lease_secs = settings.lease_secs
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    # who owns what ------------------------------------------------------------
    def _tenant_of(self, stored: str) -> tuple[str, str] | None:
        """(tenant, name) of a served collection name; None if it is nobody's here."""
        if not self.settings.auth_enabled:
            return "", stored  # one tenant: every name is its own
        try:
            return split_collection(stored)
        except ValueError:
            return None

    def _indexer(self) -> Indexer:
        if self.indexer is None:
            raise NotFound("indexing is off on this deployment (INDEXING_ENABLED=false): there is "
                           "nothing to reindex", code="REINDEX_UNAVAILABLE")
        return self.indexer

    # reads ------------------------------------------------------------------
    def read(self, stored: str) -> tuple[ReindexJob | None, str | None]:
        try:
            found = self.store.get(reindex_job_key(stored))
        except ObjectNotFound:
            return None, None
        return ReindexJob.model_validate_json(found.body), found.etag

    def jobs(self, tenant: str | None) -> list[ReindexJob]:
        """Every job record (None: of every tenant), newest first."""
        found = []
        for key in self.store.list(reindex_prefix()):
            with contextlib.suppress(ObjectNotFound):
                job = ReindexJob.model_validate_json(self.store.get(key).body)
                if tenant is None or job.tenant == tenant:
                    found.append(job)
        return sorted(found, key=lambda job: job.started_at, reverse=True)

    def building_target(self, stored: str) -> str | None:
        """The physical collection a job is building for `stored`, if one is: an upload
        writes there too (read after the upload's claim, never cached)."""
        job, _ = self.read(stored)
        return job.target if job is not None and job.state in ACTIVE else None

    def collections(self, tenant: str | None) -> list[CollectionState]:
        """Every served collection (None: of every tenant) with its drift and job."""
        indexer = self._indexer()
        names = indexer.call(lambda engine: engine.logical_collections())
        states = []
        for stored in names:
            owner = self._tenant_of(stored)
            if owner is None or (tenant is not None and owner[0] != tenant):
                continue
            states.append(self.describe(stored))
        return states

    def describe(self, stored: str, count: bool = True) -> CollectionState:
        """What built `stored`, how it differs from what runs now, its job, and (with
        `count`) its points; `serving` None when Qdrant cannot say or it does not exist."""
        indexer = self._indexer()
        owner = self._tenant_of(stored) or ("", stored)
        job, _ = self.read(stored)

        def look(engine: IndexEngine) -> tuple[str | None, dict[str, Any], int | None]:
            physical = engine.resolve(stored)
            if physical is None:
                return None, {}, None
            return physical, engine.built_with(physical), engine.count(physical, None) if count else None

        try:
            serving, built, points = indexer.call(look)
        except DeltaError:
            serving, built, points = None, {}, None
        drift = indexer.layout.drift(built) if serving is not None else []
        return CollectionState(tenant=owner[0], collection_name=owner[1], stored_collection=stored,
                               serving=serving, points=points, built_with=built, drift=drift, job=job)

    def index_status(self, stored: str) -> dict[str, Any] | None:
        """A workspace status's `index`: its collection's drift and reindex (no point count:
        status counts the workspace's own); None if storage cannot say right now."""
        try:
            state = self.describe(stored, count=False)
        except DeltaError:
            return None
        shown = state.public()
        return {key: shown[key] for key in ("serving", "built_with", "drift", "needs_reindex", "reindex")}

    # starting ---------------------------------------------------------------
    def start(self, tenant: str | None, *, collection_name: str | None = None,
              workspace_path: str | None = None, logical_repo_id: str | None = None,
              all_drifted: bool = False, run: bool = True) -> list[ReindexJob]:
        """Start (or continue) the rebuild of one collection, of the collection holding a
        workspace, or of every collection (of `tenant`; None: every tenant's) that drifted
        from the running settings. With `run`, this instance works on it in the background."""
        indexer = self._indexer()
        if sum((collection_name is not None, workspace_path is not None, all_drifted)) != 1:
            raise InvalidRequest("give exactly one of collection_name, workspace_path or all_drifted")
        if all_drifted:
            wanted = [state.stored_collection for state in self.collections(tenant) if state.drift]
        elif workspace_path is not None:
            from core.views import find_workspace

            _, head = find_workspace(self.store, self.settings, tenant or "", workspace_path, logical_repo_id)
            if head is None:
                raise NotFound("no upload reached this workspace yet", code="WORKSPACE_NOT_FOUND")
            wanted = [head.collection_name]
        else:
            assert collection_name is not None
            check_collection_name(collection_name)
            wanted = [stored_collection(tenant or "", collection_name)]
            if not indexer.call(lambda engine: engine.collection_exists(wanted[0])):
                raise NotFound("no such collection", code="COLLECTION_NOT_FOUND")
        jobs = [self._start_one(stored, "requested" if not all_drifted else None) for stored in wanted]
        if run:
            for job in jobs:
                self.run_in_background(job.stored_collection)
        return jobs

    def _start_one(self, stored: str, requested: str | None) -> ReindexJob:
        """The collection's active job, else a new one (its collection made first, so an
        upload that reads the job always finds the collection it names)."""
        indexer = self._indexer()
        existing, etag = self.read(stored)
        if existing is not None and existing.state in ACTIVE:
            return existing
        state = self.describe(stored)
        owner = self._tenant_of(stored) or ("", stored)
        layout = indexer.layout
        target = indexer.call(lambda engine: engine.create_physical(stored, layout))
        now = utc_now()
        job = ReindexJob(
            job_id=uuid.uuid4().hex, tenant=owner[0], collection_name=owner[1], stored_collection=stored,
            state=JobState.BUILDING, serving=state.serving, target=target, built_with=layout.metadata(),
            reasons=state.drift or [requested or "requested"], workspaces=self._workspaces_of(stored),
            started_at=now, updated_at=now)
        body = job.model_dump_json(indent=1).encode()
        try:
            if etag is None:
                self.store.put_if_absent(reindex_job_key(stored), body)
            else:
                self.store.put_if_match(reindex_job_key(stored), body, etag)
        except PreconditionFailed:  # another instance started one at the same moment: theirs stands
            indexer.call(lambda engine: engine.drop_physical(target))
            return self._start_one(stored, requested)
        # the list of workspaces is read again once the job is visible: a workspace made
        # later has all of its uploads write the new collection too. Appended, as another
        # instance may be working through the list by position already.
        listed = self._workspaces_of(stored)
        while True:
            current, current_etag = self.read(stored)
            if current is None or current.job_id != job.job_id or current_etag is None:
                break
            missing = [ws for ws in listed if ws not in current.workspaces]
            if not missing:
                job = current
                break
            job = current.model_copy(update={"workspaces": [*current.workspaces, *missing]})
            try:
                self.store.put_if_match(reindex_job_key(stored), job.model_dump_json(indent=1).encode(),
                                        current_etag)
                break
            except PreconditionFailed:
                continue
        log.info("reindex of %s started: building %s", stored, target,
                 extra={"collection": stored, "target": target, "reasons": job.reasons})
        return job

    def _workspaces_of(self, stored: str) -> list[str]:
        """Every workspace whose head names the collection, in key order."""
        found = []
        for folder in sorted(self.store.list_folder("workspaces/").folders):
            ws = folder.rstrip("/")
            head, _ = Sequences(self.store, ws, self.lease_secs).read()
            if head is not None and head.collection_name == stored:
                found.append(ws)
        return found

    # aborting ---------------------------------------------------------------
    def abort(self, tenant: str, collection_name: str) -> ReindexJob:
        """Stop the collection's rebuild and drop what it built; serving is untouched."""
        stored = stored_collection(tenant, collection_name)
        while True:
            job, etag = self.read(stored)
            if job is None:
                raise NotFound("this collection has no reindex job", code="REINDEX_NOT_FOUND")
            if job.state not in ACTIVE:
                if job.state == JobState.ABORTED:
                    return job
                raise Conflict(f"the reindex of this collection is {job.state.value}: nothing to abort",
                               code="REINDEX_FINISHED")
            if job.state == JobState.SWITCHING:
                raise Conflict("the reindex is switching the collection over: too late to abort",
                               code="REINDEX_FINISHED")
            aborted = job.model_copy(update={"state": JobState.ABORTED, "finished_at": utc_now(),
                                             "updated_at": utc_now()})
            assert etag is not None
            try:
                self.store.put_if_match(reindex_job_key(stored), aborted.model_dump_json(indent=1).encode(),
                                        etag)
            except PreconditionFailed:
                continue  # its runner saved progress meanwhile: decide again
            self._drop(job.target)
            metrics.REINDEX_JOBS.labels("aborted").inc()
            log.info("reindex of %s aborted; %s dropped", stored, job.target,
                     extra={"collection": stored, "target": job.target})
            return aborted

    def _drop(self, physical: str) -> None:
        self._indexer().call(lambda engine: engine.drop_physical(physical))

    # running ----------------------------------------------------------------
    def run_in_background(self, stored: str) -> None:
        """Work on the job in a thread of this instance, unless one already does."""
        with self._lock:
            running = self._threads.get(stored)
            if running is not None and running.is_alive():
                return
            thread = threading.Thread(target=self._run_logged, args=(stored,), name=f"reindex {stored}",
                                      daemon=True)
            self._threads[stored] = thread
            thread.start()

    def wait(self, stored: str, timeout: float | None = None) -> None:
        """Until this instance's background work on `stored` ends (tests, tools)."""
        with self._lock:
            thread = self._threads.get(stored)
        if thread is not None:
            thread.join(timeout)

    def resume(self, budget_secs: float) -> list[ReindexJob]:
        """Continue every active job no live instance holds (the scheduled run), within
        about `budget_secs`; the jobs as they stand afterwards."""
        deadline = time.monotonic() + budget_secs
        touched = []
        for job in self.jobs(None):
            if time.monotonic() >= deadline:
                break
            stalled = job.state in ACTIVE and job.lease_expires_at <= time.time()
            retiring = job.retire_after is not None and not job.retired and job.retire_after <= time.time()
            if stalled or retiring:
                touched.append(self.run(job.stored_collection, deadline=deadline))
        return touched

    def _run_logged(self, stored: str) -> None:
        """Work on the job until it is finished: a job another instance holds is taken
        over once its lease runs out (that instance died), one waiting for an upload is
        tried again, a failing dependency is retried a while."""
        failures = 0
        while True:
            try:
                job = self.run(stored)
                failures = 0
            except JobLost as exc:
                log.info("reindex of %s: %s", stored, exc.message)
                return
            except Unavailable as exc:
                failures += 1
                if failures > RETRIES:
                    log.error("reindex of %s paused: %s; it continues when resumed", stored, exc.message)
                    return
                time.sleep(exc.retry_after_s)
                continue
            except Exception:
                log.exception("reindex of %s stopped by an error; it continues from its cursor when "
                              "resumed", stored)
                return
            if job.state not in ACTIVE and (job.state != JobState.DONE or job.retired):
                return
            held = job.lease_expires_at + self.lease_secs * GRACE_FRACTION - time.time()
            time.sleep(max(WAIT_POLL_SECS * 5, held if job.owner is not None else 1.0))

    def run(self, stored: str, deadline: float | None = None) -> ReindexJob:
        """Take the job's lease and work until it is done, it waits for an upload, the
        deadline (monotonic) passes, or another instance owns it (JobLost)."""
        _ = self._indexer().embedder  # loaded before the lease is taken: it may take seconds
        hold = self._take(stored)
        if hold is None:
            job, _ = self.read(stored)
            assert job is not None
            return job
        try:
            if hold.job.state == JobState.BUILDING:
                self._build(hold, deadline)
            if hold.job.state == JobState.SWITCHING:
                self._switch(hold)
            if hold.job.state == JobState.DONE and not hold.job.retired:
                self._retire(hold, wait=deadline is None)
        except (JobLost, Unavailable):
            raise
        except DeltaError as exc:  # a permanent refusal: the job cannot finish as it is
            self._fail(hold, f"{exc.code}: {exc.message}")
            raise
        finally:
            if hold.job.owner is not None and hold.job.state in ACTIVE:
                with contextlib.suppress(JobLost, PreconditionFailed, ObjectNotFound):
                    self._save(hold, owner=None, lease_expires_at=0.0)
        return hold.job

    def _take(self, stored: str) -> _Run | None:
        """The job's lease for this instance; None if it is finished and retired, or held
        by a live instance."""
        job, etag = self.read(stored)
        if job is None:
            raise NotFound("this collection has no reindex job", code="REINDEX_NOT_FOUND")
        retiring = job.state == JobState.DONE and not job.retired
        if job.state not in ACTIVE and not retiring:
            return None
        grace = self.lease_secs * GRACE_FRACTION
        if job.owner is not None and time.time() < job.lease_expires_at + grace:
            return None
        asked = lease_clock()
        taken = job.model_copy(update={"owner": uuid.uuid4().hex, "updated_at": utc_now(),
                                       "lease_expires_at": time.time() + self.lease_secs})
        assert etag is not None
        try:
            body = taken.model_dump_json(indent=1).encode()
            new_etag = self.store.put_if_match(reindex_job_key(stored), body, etag)
        except PreconditionFailed:
            return None
        return _Run(taken, new_etag, asked + self.lease_secs)

    def _save(self, hold: _Run, **changes: Any) -> None:
        """Write the job's progress and renew its lease; JobLost if it is not ours anymore."""
        asked = lease_clock()
        changes.setdefault("lease_expires_at", time.time() + self.lease_secs)
        job = hold.job.model_copy(update={**changes, "updated_at": utc_now()})
        try:
            hold.etag = self.store.put_if_match(reindex_job_key(job.stored_collection),
                                                job.model_dump_json(indent=1).encode(), hold.etag)
        except PreconditionFailed:
            current, _ = self.read(job.stored_collection)
            state = current.state.value if current else "gone"
            raise JobLost(f"the job was changed by another instance (now {state}): this one stops",
                          retry_after_s=1) from None
        hold.job = job
        hold.expires = asked + self.lease_secs

    def _fail(self, hold: _Run, error: str) -> None:
        with contextlib.suppress(JobLost):
            self._save(hold, state=JobState.FAILED, error=error, finished_at=utc_now(), owner=None)
        self._drop(hold.job.target)
        metrics.REINDEX_JOBS.labels("failed").inc()
        log.error("reindex of %s failed: %s", hold.job.stored_collection, error)

    # building ---------------------------------------------------------------
    def _build(self, hold: _Run, deadline: float | None) -> None:
        indexer = self._indexer()
        while hold.job.workspaces_done < len(hold.job.workspaces):
            if deadline is not None and time.monotonic() >= deadline:
                return
            ws = hold.job.workspaces[hold.job.workspaces_done]
            if not self._step(hold, indexer, ws):
                return  # waiting for a pending upload: continued later
        self.faults.at("reindex_before_switch", hold.job.stored_collection)
        self._save(hold, state=JobState.SWITCHING, waiting_for=None)

    def _step(self, hold: _Run, indexer: Indexer, ws: str) -> bool:
        """One batch of `ws` (or its commits, or moving on to the next workspace); False
        when a pending upload holds the workspace past CLAIM_WAIT_SECS."""
        sequences = Sequences(self.store, ws, self.lease_secs)
        busy, head, etag = self._idle_head(sequences)
        if busy:
            self._save(hold, waiting_for=ws)
            return False
        if head is None or head.deletion is not None or head.collection_name != hold.job.stored_collection:
            # deleted (or being deleted, `core.deletion`) or moved to another collection
            # meanwhile: nothing of it belongs here
            self._clear(hold, indexer, ws, None)
            self._save(hold, workspaces_done=hold.job.workspaces_done + 1, cursor="", commits_phase=False)
            return True
        if hold.job.commits_phase:
            written = self._commits(hold, indexer, ws, head)
            self._save(hold, workspaces_done=hold.job.workspaces_done + 1, cursor="", commits_phase=False,
                       commits_done=hold.job.commits_done + written, waiting_for=None)
            return True
        keys = self._next_keys(ws, hold.job.cursor, hold.batch_files)
        paths = [key.removeprefix(tree_prefix(ws)) for key in keys]
        dirty = set(hold.job.dirty)
        # a path of an overlapped batch that the tree no longer holds: its points go
        stale = {p for p in dirty if p not in paths and (not paths or p <= paths[-1])}
        if stale:
            self._clear(hold, indexer, ws, sorted(stale))
        upserted = self._index_batch(hold, indexer, ws, head, keys) if keys else 0
        _, after_etag = sequences.read()
        if after_etag != etag:  # an upload ran meanwhile: its files may be older in the batch
            hold.batch_files = max(1, hold.batch_files // 4)
            metrics.REINDEX_BATCHES_REDONE.inc()
            self._save(hold, batches_redone=hold.job.batches_redone + 1,
                       dirty=sorted((dirty - stale) | set(paths)))
            return True
        dirty -= stale | set(paths)
        hold.batch_files = min(BATCH_FILES, hold.batch_files * 2)
        if not keys:
            if dirty:
                self._clear(hold, indexer, ws, sorted(dirty))
            self._save(hold, commits_phase=True, waiting_for=None, dirty=[])
            return True
        metrics.REINDEX_FILES.inc(len(keys))
        metrics.REINDEX_POINTS.inc(upserted)
        self._save(hold, cursor=keys[-1], files_done=hold.job.files_done + len(keys),
                   points_written=hold.job.points_written + upserted, waiting_for=None, dirty=sorted(dirty))
        self.faults.at("reindex_after_batch", hold.job.stored_collection)
        return True

    def _idle_head(self, sequences: Sequences) -> tuple[bool, HeadRecord | None, str | None]:
        """(busy, head, etag): the head once no upload holds it, waiting up to
        CLAIM_WAIT_SECS; busy if one still does."""
        waited_until = time.monotonic() + self.settings.claim_wait_secs
        while True:
            head, etag = sequences.read()
            if head is None or head.pending is None:
                return False, head, etag
            if time.monotonic() >= waited_until:
                return True, head, etag
            time.sleep(WAIT_POLL_SECS)

    def _next_keys(self, ws: str, cursor: str, most: int) -> list[str]:
        """The next `most` tree keys after the cursor, in byte order."""
        return list(itertools.islice(self.store.list(tree_prefix(ws), start_after=cursor), most))

    def _target(self, hold: _Run, ws: str, head: HeadRecord) -> IndexTarget:
        return IndexTarget(collection=hold.job.target, workspace=ws,
                           repo=head.logical_repo_id or ws.rsplit("-", 1)[0],
                           bundle_id=f"reindex-{hold.job.job_id}", sequence=head.last_sequence,
                           host_root=head.source_path)

    def _index_batch(self, hold: _Run, indexer: Indexer, ws: str, head: HeadRecord, keys: list[str]) -> int:
        """Index these tree files into the target, each replacing what it held there."""
        with tempfile.TemporaryDirectory(prefix="reindex-", dir=self.store.scratch_dir) as scratch:

            def fetch(numbered: tuple[int, str]) -> Write | None:
                number, key = numbered
                local = Path(scratch) / str(number)
                try:
                    self.store.download(key, local)
                except ObjectNotFound:
                    return None  # deleted since the listing: the head check sees that upload
                sha1 = sha1_of_file(local)
                staged[str(number)] = StagedFile(local, sha1, local.stat().st_size)
                return Write(path=key.removeprefix(tree_prefix(ws)), member=str(number), sha1=sha1,
                             replaces=True)

            staged: dict[str, StagedFile] = {}
            writes = [w for w in parallel_map(self.store, fetch, enumerate(keys)) if w is not None]
            plan = ApplyPlan(bundle_id=f"reindex-{hold.job.job_id}", writes=writes)
            stats = indexer.index(self._target(hold, ws, head), plan, cast(Any, _Staged(staged)),
                                  before=lambda paths: {}, fence=lambda engine: self._leased(engine, hold),
                                  scan_paths=True)
        return stats.points_upserted

    def _clear(self, hold: _Run, indexer: Indexer, ws: str, paths: list[str] | None) -> None:
        """Remove the target's points of these paths of `ws` (None: all of its points)."""
        where: dict[str, Any] = {"workspace": ws}
        if paths is not None:
            where["metadata.path"] = paths

        def clear(engine: IndexEngine) -> None:
            guarded = self._leased(engine, hold)
            ids = [p.id for p in engine.scroll(hold.job.target, where, vectors=False)]
            if paths is None:
                from core.indexing.commits import COMMIT_WORKSPACE

                ids += [p.id for p in engine.scroll(hold.job.target, {COMMIT_WORKSPACE: ws}, vectors=False)]
            if ids:
                guarded.delete(hold.job.target, ids)

        indexer.call(clear)

    def _commits(self, hold: _Run, indexer: Indexer, ws: str, head: HeadRecord) -> int:
        """Index the workspace's stored commit records the target lacks."""
        written = 0
        batch: list[GitCommit] = []
        target = self._target(hold, ws, head)
        for key in self.store.list(commits_prefix(ws)):
            try:
                record = self.store.get(key)
            except ObjectNotFound:
                continue
            batch.append(_commit_of(record.body))
            if len(batch) >= COMMITS_PER_BATCH:
                written += indexer.index_commits(target, batch, lambda engine: self._leased(engine, hold))
                batch = []
                self._save(hold)  # renews the lease over long histories
        if batch:
            written += indexer.index_commits(target, batch, lambda engine: self._leased(engine, hold))
        return written

    def _leased(self, engine: IndexEngine, hold: _Run) -> IndexEngine:
        """`engine`, writing only inside the job's lease, which it renews once a third of
        it has passed (a long batch or history keeps its hold)."""
        bound = self.settings.qdrant_request_bound

        @contextlib.contextmanager
        def within_lease() -> Iterator[None]:
            if lease_clock() > hold.expires - self.lease_secs * 2 / 3:
                self._save(hold)
            if lease_clock() + bound >= hold.expires:
                raise JobLost("this instance's hold on the reindex job ran out before it could write",
                              retry_after_s=1)
            yield

        return guard_writes(engine, within_lease)

    # switching --------------------------------------------------------------
    def _switch(self, hold: _Run) -> None:
        """Serve the new collection: one atomic alias switch, then the job says done."""
        job = hold.job
        if lease_clock() + self.settings.qdrant_request_bound >= hold.expires:
            self._save(hold)  # the switch is a write too: only inside the lease
        self._indexer().call(lambda engine: engine.switch_alias(job.stored_collection, job.target))
        self.faults.at("reindex_after_switch", job.stored_collection)
        # requests that resolved the old collection just before the switch finish in it:
        # it goes once an upload's lease that began then has run out
        retire_after = time.time() + self.lease_secs * (1 + GRACE_FRACTION)
        self._save(hold, state=JobState.DONE, finished_at=utc_now(), retire_after=retire_after, owner=None,
                   lease_expires_at=0.0, waiting_for=None)
        metrics.REINDEX_JOBS.labels("done").inc()
        log.info("reindex of %s done: now served by %s (%s files, %s points)", job.stored_collection,
                 job.target, hold.job.files_done, hold.job.points_written,
                 extra={"collection": job.stored_collection, "target": job.target,
                        "files": hold.job.files_done, "points": hold.job.points_written})

    def _retire(self, hold: _Run, wait: bool) -> None:
        """Drop the collection the job replaced once nothing can be using it."""
        job = hold.job
        assert job.retire_after is not None
        left = job.retire_after - time.time()
        if left > 0:
            if not wait:
                return
            time.sleep(left)
        old = job.serving
        if old is not None and old != job.target and old != job.stored_collection:
            def drop(engine: IndexEngine) -> None:
                if engine.resolve(job.stored_collection) != old:
                    engine.drop_physical(old)

            self._indexer().call(drop)
        self._save(hold, retired=True, owner=None, lease_expires_at=0.0)


class _Staged:
    """The files of one batch, as the index step reads a bundle's (`Bundle.staged`)."""

    def __init__(self, staged: dict[str, StagedFile]) -> None:
        self.staged = staged


def _commit_of(body: bytes) -> GitCommit:
    """A stored commit record (`core.history`, format RECORD_FORMAT) as the commit it was."""
    import json

    record = json.loads(body)
    if record.get("format", RECORD_FORMAT) != RECORD_FORMAT:
        raise InvalidRequest("a stored commit record has an unknown format")
    return GitCommit(commit_id=record["commit_id"], author_name=record.get("author_name"),
                     authored_date=record.get("authored_date"), message=record.get("message"),
                     files=record.get("files"), diff=record.get("diff"))


