"""The per-workspace sequence record (`head.json`) and its compare-and-swap updates.

The head is the only mutable record that decides anything. Every change is a
conditional write against the etag just read, so any number of instances may
race: the loser re-reads and re-decides. Decisions on a read head, for a bundle B:

    head                         | B already committed | decision
    -----------------------------|---------------------|-------------------------------
    (any)                        | yes                 | Duplicate (answer the stored result)
    missing                      | no                  | create head, pending=B, seq 1   (If-None-Match: *)
    idle, last=N                 | no                  | pending=B, seq N+1              (If-Match)
    pending=B, lease live        | no                  | Busy: another instance applies B
    pending=B, lease expired     | no                  | take over B (new owner, same seq)  (If-Match)
    pending=C, lease live        | no                  | Busy (409 if B asked for a number
                                 |                     |   other than C's sequence + 1)
    pending=C, lease expired     | no                  | Stalled: replay C from its raw bundle first

A head whose `deletion` is set is a tombstone (`core.deletion`): no claim is made
on it (409 WORKSPACE_DELETING), and only the deleter it names writes it, until it
removes it last. A pending claim is dropped only by a deleter, and only once its
lease (plus grace) expired, so its owner no longer writes.

A claimed bundle is never abandoned: it is committed with its sequence number
by its owner or by whoever takes the expired lease over, so numbers are neither
skipped nor reused. A lease counts as expired for a taker only `grace` after
`lease_expires_at`, while its owner stops writing before it (`core.fence`);
only the owner named in the head renews or commits.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from core.errors import SequenceMismatch, Unavailable, WorkspaceDeleting
from core.keys import head_key, result_key
from core.models import UploadResult
from core.storage import Expect, ObjectLocked, ObjectNotFound, ObjectStore, PreconditionFailed

FORMAT = 1
GRACE_FRACTION = 0.1  # of the lease: what a taker waits past the expiry, for clock skew


def lease_clock() -> float:
    """The clock an owner measures its lease on: monotonic, and still counting while the
    machine is suspended or the VM paused (CLOCK_BOOTTIME), so a frozen owner that wakes
    knows its lease is gone before it writes."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class HeadStatus(StrEnum):
    IDLE = "idle"
    APPLYING = "applying"
    DELETING = "deleting"


class PendingBundle(BaseModel):
    """A claimed, not yet committed bundle and the lease of the instance applying it."""

    model_config = ConfigDict(frozen=True)

    bundle_id: str
    sequence: int
    owner: str
    attempt: int = 1
    operations: int = 0
    collection_name: str
    source_path: str | None = None  # the client's local path of the workspace, as it told us
    claimed_at: str
    lease_expires_at: float

    def expired(self, now: float, grace: float = 0.0) -> bool:
        return now >= self.lease_expires_at + grace


class Deletion(BaseModel):
    """The tombstone of a workspace being deleted, and the lease of the instance deleting it."""

    model_config = ConfigDict(frozen=True)

    owner: str
    attempt: int = 1
    started_at: str
    lease_expires_at: float

    def expired(self, now: float, grace: float = 0.0) -> bool:
        return now >= self.lease_expires_at + grace


class HeadRecord(BaseModel):
    """`workspaces/<ws>/head.json`."""

    model_config = ConfigDict(frozen=True)

    format: int = FORMAT
    workspace_key: str
    workspace_path: str
    logical_repo_id: str | None = None
    source_path: str | None = None  # as the latest claimed bundle's client told it
    collection_name: str
    status: HeadStatus = HeadStatus.IDLE
    last_sequence: int = 0
    last_bundle_id: str | None = None
    last_upload: str | None = None
    pending: PendingBundle | None = None
    deletion: Deletion | None = None  # set: a tombstone (`core.deletion`)


class LeaseLost(Unavailable):
    code = "LEASE_LOST"


@dataclass(frozen=True)
class Claimed:
    pending: PendingBundle
    resumed: bool
    granted_at: float  # `lease_clock()` read before the lease was written: its owner's start


@dataclass(frozen=True)
class Duplicate:
    result: UploadResult


@dataclass(frozen=True)
class Busy:
    pending: PendingBundle


@dataclass(frozen=True)
class Stalled:
    pending: PendingBundle


ClaimOutcome = Claimed | Duplicate | Busy | Stalled


@dataclass(frozen=True)
class Tombstoned:
    """The head is now a tombstone naming this deleter (`head`: as written)."""

    deletion: Deletion
    resumed: bool  # an earlier deleter's expired tombstone was taken over
    granted_at: float  # `lease_clock()` read before the tombstone was written
    head: HeadRecord


@dataclass(frozen=True)
class Occupied:
    """A live claim or a live deleter holds the head: wait, or come back later."""

    lease_expires_at: float


DeletionOutcome = Tombstoned | Occupied | None  # None: no head (nothing to delete)


@dataclass(frozen=True)
class BundleClaim:
    """What a claim needs to know about the bundle asking for a number."""

    bundle_id: str
    operations: int
    collection_name: str
    workspace_path: str
    logical_repo_id: str | None
    requested_sequence: int | None
    force: bool
    source_path: str | None = None


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Sequences:
    """Reads and conditionally writes one workspace's head record."""

    def __init__(self, store: ObjectStore, ws: str, lease_secs: float) -> None:
        self.store = store
        self.ws = ws
        self.lease_secs = lease_secs
        self.grace = lease_secs * GRACE_FRACTION

    def read(self) -> tuple[HeadRecord | None, str | None]:
        try:
            stored = self.store.get(head_key(self.ws))
        except ObjectNotFound:
            return None, None
        return HeadRecord.model_validate_json(stored.body), stored.etag

    def committed_result(self, head: HeadRecord | None, bundle_id: str) -> UploadResult | None:
        """The stored result of `bundle_id` if its sequence is committed in `head`."""
        if head is None:
            return None
        try:
            stored = self.store.get(result_key(self.ws, bundle_id))
        except ObjectNotFound:
            return None
        result = UploadResult.model_validate_json(stored.body)
        return result if result.sequence_number <= head.last_sequence else None

    def precheck(self, claim: BundleClaim) -> None:
        """Refuse an explicit sequence number that cannot be next, before anything is
        stored; the conditional write in `claim` still decides races."""
        if claim.requested_sequence is None or claim.force:
            return
        head, _ = self.read()
        _refuse_tombstone(head)
        if head is None:
            _check_requested(claim, 1)
        elif self.committed_result(head, claim.bundle_id) is None:
            pending = head.pending
            if pending is None or pending.bundle_id != claim.bundle_id:
                _check_requested(claim, (pending.sequence if pending else head.last_sequence) + 1)

    def claim(self, claim: BundleClaim) -> ClaimOutcome:
        """One decision of the table above, retried until a conditional write lands."""
        while True:
            head, etag = self.read()
            _refuse_tombstone(head)
            done = self.committed_result(head, claim.bundle_id)
            if done is not None:
                return Duplicate(done)
            granted = lease_clock()
            now = time.time()
            pending = head.pending if head else None
            if pending is not None:
                expired = pending.expired(now, self.grace)
                if pending.bundle_id == claim.bundle_id:
                    if not expired:
                        return Busy(pending)
                    taken = pending.model_copy(
                        update={"owner": _owner(), "attempt": pending.attempt + 1,
                                "lease_expires_at": now + self.lease_secs}
                    )
                    try:
                        if self._swap(head, etag, {"pending": taken}):
                            return Claimed(taken, resumed=True, granted_at=granted)
                    except ObjectLocked:  # its owner is writing right now (filesystem)
                        return Busy(pending)
                    continue
                _check_requested(claim, pending.sequence + 1)
                return Stalled(pending) if expired else Busy(pending)
            last = head.last_sequence if head else 0
            _check_requested(claim, last + 1)
            fresh = PendingBundle(
                bundle_id=claim.bundle_id,
                sequence=last + 1,
                owner=_owner(),
                operations=claim.operations,
                collection_name=claim.collection_name,
                source_path=claim.source_path,
                claimed_at=utc_now(),
                lease_expires_at=now + self.lease_secs,
            )
            if head is None:
                record = HeadRecord(
                    workspace_key=self.ws,
                    workspace_path=claim.workspace_path,
                    logical_repo_id=claim.logical_repo_id,
                    source_path=claim.source_path,
                    collection_name=claim.collection_name,
                    status=HeadStatus.APPLYING,
                    pending=fresh,
                )
                try:
                    self.store.put_if_absent(head_key(self.ws), _dump(record))
                except PreconditionFailed:
                    continue
                return Claimed(fresh, resumed=False, granted_at=granted)
            changes = {"pending": fresh, "status": HeadStatus.APPLYING,
                       "collection_name": claim.collection_name,
                       "source_path": claim.source_path or head.source_path}
            if self._swap(head, etag, changes):  # ObjectLocked: a stale writer checks its claim
                return Claimed(fresh, resumed=False, granted_at=granted)

    def owns(self, mine: PendingBundle) -> bool:
        """Whether the head still names `mine`'s owner as the one applying it."""
        head, _ = self.read()
        return _owned(head, mine)

    def renew(self, mine: PendingBundle) -> PendingBundle:
        """Extend the lease; `LeaseLost` if another instance took the bundle over."""
        while True:
            head, etag = self.read()
            if not _owned(head, mine):
                raise LeaseLost("another instance took this bundle over", retry_after_s=1)
            renewed = mine.model_copy(update={"lease_expires_at": time.time() + self.lease_secs})
            if self._swap(head, etag, {"pending": renewed}):
                return renewed

    def release(self, mine: PendingBundle) -> None:
        """Best effort after a failure: let the next attempt take over at once."""
        head, etag = self.read()
        if _owned(head, mine):
            self._swap(head, etag, {"pending": mine.model_copy(update={"lease_expires_at": 0.0})})

    def commit(self, mine: PendingBundle, committed_at: str) -> None:
        """Make `mine` the last sequence. Idempotent: a commit already made is fine. Only
        the owner commits: a taker may be writing the same bundle's plan right now."""
        while True:
            head, etag = self.read()
            if head is not None and head.last_sequence >= mine.sequence:
                return
            if not _owned(head, mine):
                raise LeaseLost("another instance took this bundle over", retry_after_s=1)
            changes = {
                "pending": None,
                "status": HeadStatus.IDLE,
                "last_sequence": mine.sequence,
                "last_bundle_id": mine.bundle_id,
                "last_upload": committed_at,
            }
            if self._swap(head, etag, changes):
                return

    # deletion (core.deletion) ---------------------------------------------
    def begin_deletion(self) -> DeletionOutcome:
        """Make the head a tombstone naming a new deleter, by compare-and-swap: only when no
        live claim is pending (an expired one is dropped: its owner's fence stops it, as it
        no longer owns the head), or take over a deleter's tombstone whose lease expired."""
        while True:
            head, etag = self.read()
            if head is None:
                return None
            granted = lease_clock()
            now = time.time()
            earlier = head.deletion
            if earlier is not None and not earlier.expired(now, self.grace):
                return Occupied(earlier.lease_expires_at)
            if head.pending is not None and not head.pending.expired(now, self.grace):
                return Occupied(head.pending.lease_expires_at)
            mine = Deletion(owner=_owner(), attempt=earlier.attempt + 1 if earlier else 1,
                            started_at=earlier.started_at if earlier else utc_now(),
                            lease_expires_at=now + self.lease_secs)
            changes = {"deletion": mine, "pending": None, "status": HeadStatus.DELETING}
            try:
                if self._swap(head, etag, changes):
                    return Tombstoned(mine, resumed=earlier is not None, granted_at=granted,
                                      head=head.model_copy(update=changes))
            except ObjectLocked:  # an owner is inside a fenced section right now (filesystem)
                return Occupied(head.pending.lease_expires_at if head.pending else now + 1)

    def deleting(self, mine: Deletion) -> bool:
        """Whether the head still names `mine` as its deleter."""
        head, _ = self.read()
        return _deleter(head, mine)

    def renew_deletion(self, mine: Deletion) -> Deletion:
        """Extend the deleter's lease; `LeaseLost` if another deleter took it over."""
        while True:
            head, etag = self.read()
            if not _deleter(head, mine):
                raise LeaseLost("another instance took this deletion over", retry_after_s=1)
            renewed = mine.model_copy(update={"lease_expires_at": time.time() + self.lease_secs})
            if self._swap(head, etag, {"deletion": renewed}):
                return renewed

    def remove(self, mine: Deletion) -> None:
        """The deletion's last step: the head goes, against the etag just read (on the
        filesystem under the head's lock, so no claim can interleave)."""
        for _ in range(3):
            head, etag = self.read()
            if head is None:
                return
            if not _deleter(head, mine):
                raise LeaseLost("another instance took this deletion over", retry_after_s=1)
            try:
                self.store.delete(head_key(self.ws), expect=Expect(etag))
                return
            except PreconditionFailed:
                continue
        raise LeaseLost("the head kept changing under this deletion", retry_after_s=1)

    def _swap(
        self, head: HeadRecord | None, etag: str | None, changes: Mapping[str, object]
    ) -> bool:
        assert head is not None and etag is not None
        try:
            self.store.put_if_match(head_key(self.ws), _dump(head.model_copy(update=changes)), etag)
        except PreconditionFailed:
            return False
        return True


def _owned(head: HeadRecord | None, mine: PendingBundle) -> bool:
    return (head is not None and head.pending is not None and head.pending.owner == mine.owner
            and head.pending.bundle_id == mine.bundle_id)


def _deleter(head: HeadRecord | None, mine: Deletion) -> bool:
    return head is not None and head.deletion is not None and head.deletion.owner == mine.owner


def _refuse_tombstone(head: HeadRecord | None) -> None:
    if head is not None and head.deletion is not None:
        raise WorkspaceDeleting()


def _check_requested(claim: BundleClaim, expected: int) -> None:
    wanted = claim.requested_sequence
    if wanted is not None and wanted != expected and not claim.force:
        raise SequenceMismatch(expected=expected, received=wanted)


def _owner() -> str:
    return uuid.uuid4().hex


def _dump(record: HeadRecord) -> bytes:
    return json.dumps(record.model_dump(mode="json"), indent=1).encode("utf-8")
