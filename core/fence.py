"""Fencing: a write made on behalf of a claim takes effect only while the claim is its own.

An instance can freeze (SIGSTOP, a paused VM), starve, or wait on a slow network
at any moment, then wake and carry on where it stopped; by then another instance
may have taken its expired lease over, replayed the bundle and applied later
ones. Every write of a claim (tree, stashes, plan, journal, result, Qdrant) goes
through its `Fence`, which keeps such late writes out:

    filesystem  writes run in sections that hold the head record's lock shared
    (CephFS)    (flock) and start by reading the head: it must still name this
                owner. Every change of the head (claim, takeover, renewal,
                commit) holds that lock exclusively, so the head cannot change
                hands while a section runs, and a section that starts after a
                change sees it. A process frozen inside a section keeps the
                lock: the workspace waits for it (503 WORKSPACE_BUSY) instead of
                meeting it. An evicted CephFS client loses its locks and is
                blocklisted, so its writes fail.
    S3          no locks. A tree write is conditional on the state the plan
                recorded (If-Match: etag, If-None-Match: *); an object that
                already holds the intended bytes counts as written, so a taker's
                replay converges. A refused condition with other bytes means the
                tree moved on: LEASE_LOST if the head no longer names this owner
                (else the stray write is overwritten, against its etag). Records
                are write-once. And a request starts only while the owner's own
                lease clock leaves `in_flight_secs` (the request timeouts) before
                the expiry, which a taker waits past by the lease's grace.
    Qdrant      no conditions: a write is admitted like an S3 request and, on
                the filesystem, runs inside a section.

What remains, per backend and with numbers, is in docs/storage-layout.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, cast

from core.errors import StorageFull, StorageUnavailable
from core.indexing.engines.base import WRITES, IndexEngine
from core.keys import head_key
from core.sequences import Claimed, LeaseLost, Sequences, lease_clock
from core.storage import Expect, ObjectInfo, ObjectLocked, PreconditionFailed

CONDITION_ATTEMPTS = 3
TRANSIENT_ATTEMPTS = 2  # retries of a write that timed out or met a 5xx


def _lost(why: str) -> LeaseLost:
    return LeaseLost(why, retry_after_s=1)


class Lease:
    """A lease on one workspace's head, and the fence of every write made under it:
    renewed once a third of it passed, writes admitted only inside it (S3) or in a
    section holding the head's lock shared while the head still names the holder
    (filesystem). `Fence` is a claim's, `core.deletion.DeletionLease` a deleter's."""

    holder = "bundle"  # what the lease is held for, in LEASE_LOST messages

    def __init__(self, sequences: Sequences, granted_at: float, in_flight_secs: float) -> None:
        self.sequences = sequences
        self.store = sequences.store
        self.in_flight_secs = in_flight_secs
        self._mutex = threading.Lock()
        self._sections = 0
        self._granted(granted_at)

    def _renew(self) -> None:
        """Write the renewed lease into the head (ObjectLocked: try again later)."""
        raise NotImplementedError

    def _holds(self) -> bool:
        """Whether the head still names this holder."""
        raise NotImplementedError

    def _granted(self, at: float) -> None:
        lease = self.sequences.lease_secs
        self._expires = at + lease
        self._renew_at = at + lease / 3

    # the lease ------------------------------------------------------------
    def renew_if_due(self) -> None:
        """Renew once a third of the lease has passed; `LeaseLost` if it was taken over."""
        with self._mutex:
            if lease_clock() < self._renew_at:
                return
            asked = lease_clock()
            try:
                self._renew()
            except ObjectLocked:
                # a stale writer holds the head's lock shared for a moment: nobody can
                # take the lease over meanwhile, and the next section retries
                return
            self._granted(asked)

    def admit(self) -> None:
        """Before every write request: may it still take effect?"""
        if self.store.fences_with_locks:
            if not self._sections:
                raise RuntimeError("a fenced write outside a fence section")
            return
        self.renew_if_due()
        if lease_clock() + self.in_flight_secs >= self._expires:
            raise _lost("this instance's lease ran out before it could write")

    @contextmanager
    def section(self) -> Iterator[None]:
        """A stretch of writes, entered only while the head still names this holder."""
        self.renew_if_due()
        with self.store.shared_lock(head_key(self.sequences.ws)):
            if not self._holds():
                raise _lost(f"another instance took this {self.holder} over")
            with self._mutex:
                self._sections += 1
            try:
                yield
            finally:
                with self._mutex:
                    self._sections -= 1

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """One write: in a section, and admitted."""
        with self.section():
            self.admit()
            yield

    def qdrant(self, engine: IndexEngine) -> IndexEngine:
        """`engine`, with each write call run in a section and admitted first."""
        return guard_writes(engine, self.admitted)


class Fence(Lease):
    """The lease of one claim, and every write made under it."""

    def __init__(self, sequences: Sequences, claimed: Claimed, in_flight_secs: float) -> None:
        self.pending = claimed.pending
        super().__init__(sequences, claimed.granted_at, in_flight_secs)

    def _renew(self) -> None:
        self.pending = self.sequences.renew(self.pending)

    def _holds(self) -> bool:
        return self.sequences.owns(self.pending)

    # tree writes ----------------------------------------------------------
    def put_file(self, key: str, source: Path, sha1: str, expect: Expect | None, *,
                 consume: bool = False) -> None:
        self._conditional(key, sha1, expect,
                          lambda cond: self.store.put_file(key, source, sha1, consume=consume, expect=cond))

    def copy(self, source_key: str, key: str, sha1: str | None, expect: Expect | None) -> None:
        self._conditional(key, sha1 or "", expect, lambda cond: self.store.copy(source_key, key, expect=cond))

    def delete(self, key: str, expect: Expect | None) -> None:
        self._conditional(key, None, expect, lambda cond: self.store.delete(key, expect=cond))

    def _conditional(self, key: str, sha1: str | None, expect: Expect | None,
                     write: Callable[[Expect | None], None]) -> None:
        """`write` under `expect` on a store without locks; `sha1` None wants no object.
        A refused condition is fine when the key already is as wanted (an earlier
        attempt wrote it); otherwise only the owner the head names may go on."""
        self.admit()
        if self.store.fences_with_locks or expect is None:
            write(None)
            return
        transient = 0
        for _ in range(CONDITION_ATTEMPTS + TRANSIENT_ATTEMPTS):
            try:
                write(expect)
                return
            except StorageUnavailable as exc:
                # a timeout or a 5xx, retried here rather than in botocore, so each attempt
                # is admitted; one that landed after all makes the next a lost condition
                transient += 1
                if isinstance(exc, StorageFull) or transient > TRANSIENT_ATTEMPTS:
                    raise
                time.sleep(0.05 * transient)
                self.admit()
            except PreconditionFailed:
                current = self.store.head(key)
                if _as_wanted(current, sha1):
                    return
                if not self.sequences.owns(self.pending):
                    raise _lost("another instance changed the tree after taking this bundle over") from None
                expect = Expect(current.etag if current else None)
                self.admit()
        raise _lost("the tree keeps changing under this bundle")

    # records --------------------------------------------------------------
    def put_once(self, key: str, body: bytes, same: Callable[[bytes], bool]) -> bytes:
        """A write-once record of this claim. One already there stands if `same` accepts
        it (a taker wrote it first) and is returned, so both answer alike."""
        self.admit()
        try:
            self.store.put_if_absent(key, body)
            return body
        except PreconditionFailed:
            existing = self.store.get(key).body
            if same(existing):
                return existing
            raise _lost("another claim wrote this record") from None



def _as_wanted(current: ObjectInfo | None, sha1: str | None) -> bool:
    if sha1 is None:
        return current is None
    return bool(sha1) and current is not None and current.sha1 == sha1


def guard_writes(engine: IndexEngine, around: Callable[[], AbstractContextManager[None]]) -> IndexEngine:
    """`engine`, each of its write calls (`WRITES`) run inside `around()`, which may
    refuse it by raising: the one way fences, leases and jobs keep late writes out."""
    return cast(IndexEngine, _GuardedEngine(engine, around))


class _GuardedEngine:
    def __init__(self, engine: IndexEngine, around: Callable[[], AbstractContextManager[None]]) -> None:
        self._engine = engine
        self._around = around

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._engine, name)
        if name not in WRITES:
            return attribute
        around = self._around

        def guarded(*args: Any, **kwargs: Any) -> Any:
            with around():
                return attribute(*args, **kwargs)

        return guarded
