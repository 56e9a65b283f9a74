"""Retention: one sweep over every workspace removes history outside the idempotency
window, and the clutter nothing else collects (docs/storage-layout.md, "Retention").

    per workspace, head first:
    1 history   committed sequences outside a window set (beyond RETENTION_KEEP_SEQUENCES,
                or older than RETENTION_MAX_AGE_HOURS), oldest first, the last sequence never:
                plan and stashes -> raw bundle -> result -> journal entry
    2 plans     left-over plans and stashes of committed bundles (only while no claim is pending)
    3 intents   expired upload-url intents: their incoming/ objects, then the intent
    4 refusals  refusal records older than the age window (24 h at least)

Why this order is safe against uploads on every backend, and after a crash anywhere:

- A bundle's own objects go while its result still stands. While it stands, the
  duplicate check (`Sequences.committed_result`) answers a retry with it, so nobody
  claims the bundle again, and the raw bundle and plan it could need are nobody's.
- The result goes before the journal entry, and the journal entry, the sweep's
  only way back to a bundle id, goes last: an interrupted sweep starts again from
  it. A result that is already gone, or names another sequence (the bundle came
  back after its window and was committed anew), leaves the bundle's objects alone.
- Nothing of the pending claim is touched: its number is above `last_sequence`,
  and left-over plans are cleared only while the head shows no claim.
- Intents and refusals are deleted against the etag that was read (`Expect`), so one
  written again meanwhile stays (Ceph RGW 16 ignores the condition on deletes).

Every step is a delete of a key named by what was read, so a sweep is idempotent; at
most RETENTION_BATCH objects of each kind go per workspace per run (`unfinished`
counts the workspaces with more left for the next run).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from core import metrics
from core.config import Settings
from core.errors import Unavailable, WorkspaceBusy
from core.keys import (
    WORKSPACE_KEY,
    WORKSPACES_PREFIX,
    incoming_prefix,
    intents_prefix,
    journal_prefix,
    journal_sequence,
    plan_key,
    plans_prefix,
    raw_bundle_key,
    refusals_prefix,
    result_key,
    stash_prefix,
)
from core.models import UploadResult
from core.sequences import HeadRecord, Sequences
from core.storage import Expect, ObjectNotFound, ObjectStore, PreconditionFailed, StoredObject

log = logging.getLogger(__name__)
HOUR = 3600.0
REFUSAL_FLOOR_SECS = 24 * HOUR  # a direct-upload client polls its bundle's state for a while
KINDS = ("raw_bundle", "result", "journal", "plan", "stash", "intent", "incoming", "refusal")
_one_sweep = threading.Lock()  # sweeps of one process take turns


@dataclass(frozen=True)
class Rules:
    """The windows of RETENTION_*; 0 turns one off."""

    keep_sequences: int
    max_age_secs: float
    batch: int

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(settings.retention_keep_sequences, settings.retention_max_age_hours * HOUR,
                   settings.retention_batch)

    @property
    def removes_history(self) -> bool:
        """With no window set, every committed sequence stays."""
        return self.keep_sequences > 0 or self.max_age_secs > 0

    @property
    def refusal_secs(self) -> float:
        return max(self.max_age_secs, REFUSAL_FLOOR_SECS)


@dataclass
class Summary:
    """What one sweep removed, per kind of object."""

    workspaces: int = 0
    sequences_removed: int = 0
    unfinished: int = 0  # workspaces where RETENTION_BATCH stopped the sweep
    failed: int = 0  # workspaces whose sweep failed (logged); the others went on
    objects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def removed(self, kind: str, size: int) -> None:
        self.objects[kind] += 1
        self.bytes[kind] += size
        metrics.GC_OBJECTS.labels(kind).inc()
        metrics.GC_BYTES.labels(kind).inc(size)

    def as_dict(self) -> dict[str, Any]:
        return {"workspaces": self.workspaces, "sequences_removed": self.sequences_removed,
                "objects_removed": sum(self.objects.values()), "bytes_removed": sum(self.bytes.values()),
                "removed": {kind: {"objects": self.objects[kind], "bytes": self.bytes[kind]}
                            for kind in KINDS},
                "unfinished_workspaces": self.unfinished, "failed_workspaces": self.failed}


class Retention:
    """Sweeps one store; stateless between sweeps."""

    def __init__(self, settings: Settings, store: ObjectStore) -> None:
        self.settings = settings
        self.store = store
        self.rules = Rules.of(settings)

    def sweep(self, now: float | None = None) -> Summary:
        """Every workspace once. Storage that does not answer ends the sweep (503: the
        scheduler tries again); a busy lock or any other failure ends only its workspace's
        (counted, and logged)."""
        summary = Summary()
        with _one_sweep:
            for ws in sorted(self.store.list_folder(WORKSPACES_PREFIX).folders):
                if not WORKSPACE_KEY.fullmatch(ws):
                    continue
                summary.workspaces += 1
                try:
                    self.sweep_workspace(ws, summary, time.time() if now is None else now)
                except WorkspaceBusy:  # a record's lock stayed held (filesystem): next run
                    summary.unfinished += 1
                except Unavailable:
                    raise
                except Exception:
                    summary.failed += 1
                    log.exception("retention: the sweep of workspace %s failed", ws)
        log.info("retention: %s sequences, %s objects removed", summary.sequences_removed,
                 sum(summary.objects.values()), extra={"gc": summary.as_dict()})
        return summary

    def sweep_workspace(self, ws: str, summary: Summary, now: float) -> None:
        head, _ = Sequences(self.store, ws, self.settings.lease_secs).read()
        if head is not None:
            self._forget_history(ws, head, summary, now)
            if head.pending is None:  # a claim writes its plan: leave the plans alone meanwhile
                self._clear_plans(ws, head, summary)
        self._expire_intents(ws, summary, now)
        self._expire_refusals(ws, summary, now)

    # 1 history ---------------------------------------------------------------------
    def _forget_history(self, ws: str, head: HeadRecord, summary: Summary, now: float) -> None:
        """Oldest first, while a sequence is outside a window: beyond the last
        RETENTION_KEEP_SEQUENCES, or committed longer than RETENTION_MAX_AGE_HOURS ago
        (each rule where it is set). The last sequence always stays."""
        rules = self.rules
        if not rules.removes_history:
            return
        beyond = head.last_sequence - rules.keep_sequences if rules.keep_sequences else 0
        cutoff = now - rules.max_age_secs if rules.max_age_secs else None
        done = 0
        for key in self.store.list(journal_prefix(ws)):  # byte order is sequence order (zero-padded)
            sequence = journal_sequence(key)
            if sequence is None:
                continue
            if sequence >= head.last_sequence:
                return
            if done >= rules.batch:
                summary.unfinished += 1
                return
            try:
                stored = self.store.get(key)
            except ObjectNotFound:  # another sweep took it
                continue
            entry = UploadResult.model_validate_json(stored.body)
            old = cutoff is not None and _unix(entry.committed_at) <= cutoff
            if sequence > beyond and not old:
                return  # inside every window, and so is everything after it
            self._forget(ws, sequence, entry.bundle_id, key, len(stored.body), summary)
            done += 1

    def _forget(self, ws: str, sequence: int, bundle_id: str, journal: str, size: int,
                summary: Summary) -> None:
        try:
            stored = self.store.get(result_key(ws, bundle_id))
            result: UploadResult | None = UploadResult.model_validate_json(stored.body)
        except ObjectNotFound:
            result = None
        if result is not None and result.sequence_number == sequence:
            # the result still answers every retry of the bundle: its objects are nobody's
            self._remove_plan(ws, bundle_id, summary)
            self._remove_sized("raw_bundle", raw_bundle_key(ws, bundle_id), summary)
            self.store.delete(result_key(ws, bundle_id))
            summary.removed("result", len(stored.body))
        self.store.delete(journal)
        summary.removed("journal", size)
        summary.sequences_removed += 1

    # 2 plans -----------------------------------------------------------------------
    def _clear_plans(self, ws: str, head: HeadRecord, summary: Summary) -> None:
        """Plans and stashes a committer died before removing, or a lost lease wrote late."""
        prefix = plans_prefix(ws)
        bundles: set[str] = set()
        for listed, key in enumerate(self.store.list(prefix)):
            if listed >= self.rules.batch:
                summary.unfinished += 1
                break
            name, below, _ = key[len(prefix):].partition("/")  # <id>.json, or <id>.stash/<owner>/<n>
            bundles.add(name.removesuffix(".stash") if below else name.removesuffix(".json"))
        sequences = Sequences(self.store, ws, self.settings.lease_secs)
        for bundle_id in sorted(bundles):
            if sequences.committed_result(head, bundle_id) is not None:
                self._remove_plan(ws, bundle_id, summary)

    def _remove_plan(self, ws: str, bundle_id: str, summary: Summary) -> None:
        for key in list(self.store.list(stash_prefix(ws, bundle_id))):
            self._remove_sized("stash", key, summary)
        self._remove_sized("plan", plan_key(ws, bundle_id), summary)

    # 3 intents, 4 refusals -----------------------------------------------------------
    def _expire_intents(self, ws: str, summary: Summary, now: float) -> None:
        prefix = intents_prefix(ws)
        for key, stored in self._expired(prefix, "expires_at", now, summary):
            # listed before the intent goes: an upload announced after it is never among them
            uploads = list(self.store.list(incoming_prefix(ws, key[len(prefix):].removesuffix(".json"))))
            if self._remove_record(key, stored, "intent", summary):  # else announced again: it stands
                for upload in uploads:
                    self._remove_sized("incoming", upload, summary)

    def _expire_refusals(self, ws: str, summary: Summary, now: float) -> None:
        cutoff = now - self.rules.refusal_secs
        for key, stored in self._expired(refusals_prefix(ws), "refused_at", cutoff, summary):
            self._remove_record(key, stored, "refusal", summary)  # refused again meanwhile: it stands

    def _expired(self, prefix: str, field: str, cutoff: float,
                 summary: Summary) -> Iterator[tuple[str, StoredObject]]:
        """The records under `prefix` whose `field` (epoch seconds) is before `cutoff`,
        among the first batch listed (more left: the workspace is unfinished)."""
        for listed, key in enumerate(self._first(prefix)):
            if listed >= self.rules.batch:
                summary.unfinished += 1
                return
            try:
                stored = self.store.get(key)
            except ObjectNotFound:
                continue
            stamp = _number(stored.body, field)
            if stamp is not None and stamp < cutoff:
                yield key, stored

    def _remove_record(self, key: str, stored: StoredObject, kind: str, summary: Summary) -> bool:
        """Remove a record only as it was read; False if it was written again meanwhile."""
        try:
            self.store.delete(key, expect=Expect(stored.etag))
        except PreconditionFailed:
            return False
        summary.removed(kind, len(stored.body))
        return True

    def _first(self, prefix: str) -> list[str]:
        """The first RETENTION_BATCH keys under `prefix`, and one more to tell there are more."""
        return list(islice(self.store.list(prefix), self.rules.batch + 1))

    def _remove_sized(self, kind: str, key: str, summary: Summary) -> None:
        info = self.store.head(key)
        if info is None:
            return
        self.store.delete(key)
        summary.removed(kind, info.size)


def _unix(timestamp: str) -> float:
    """A stored `committed_at` as unix seconds; one that does not parse counts as new."""
    try:
        return datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        log.warning("retention: a journal entry's committed_at %r does not parse", timestamp[:64])
        return float("inf")


def _number(body: bytes, name: str) -> float | None:
    """A numeric field of a JSON record, None if the record or the field is not one."""
    try:
        value = json.loads(body).get(name)
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
