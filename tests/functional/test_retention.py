"""Retention (core/retention.py) on every backend: what a sweep removes and what it keeps,
the idempotency window it leaves, an interrupted sweep, a pending claim, a racing upload.

The pipeline and the sweep are the real ones on a real store (filesystem, moto, Ceph RGW);
a crash is a store wrapper that fails one delete on purpose.
"""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import pytest

from core.config import Settings
from core.errors import SequenceMismatch
from core.faults import InjectedFault
from core.keys import (
    incoming_key,
    intent_key,
    journal_key,
    plan_key,
    raw_bundle_key,
    refusal_key,
    result_key,
    stash_key,
    tree_prefix,
    workspace_key,
)
from core.models import UploadRequest, UploadResult
from core.pipeline import Pipeline
from core.retention import Retention
from core.sequences import Sequences
from core.storage import Expect, ObjectStore
from tests.support.bundles import BundleBuilder

WORKSPACE = "/work/kept"
WS = workspace_key("", WORKSPACE, None)
DAY = 86_400.0


def settings(**overrides: Any) -> Settings:
    # a lease longer than an S3 request's bound (the fixtures' stores: 65 s), or the fence admits nothing
    values: dict[str, Any] = {"qdrant_url": ":memory:", "indexing_enabled": False, "lease_secs": 300,
                              "retention_keep_sequences": 2, "retention_max_age_hours": 0, **overrides}
    return Settings(**values)


def upload(config: Settings, store: ObjectStore, bundle: bytes, workspace: str = WORKSPACE) -> UploadResult:
    return Pipeline(config, store, None).upload(UploadRequest(workspace_path=workspace), io.BytesIO(bundle))


def one_file(version: int, sequence_number: int | None = None) -> BundleBuilder:
    """Each delta rewrites one file of four, as an editor's save does."""
    return BundleBuilder(sequence_number=sequence_number).created(f"src/{version % 4}.py",
                                                                  f"v{version}\n".encode())


def keys(store: ObjectStore, prefix: str) -> set[str]:
    return set(store.list(prefix))


def tree(store: ObjectStore, ws: str = WS) -> dict[str, bytes]:
    return {key.removeprefix(tree_prefix(ws)): store.get(key).body for key in store.list(tree_prefix(ws))}


def test_a_sweep_keeps_the_window_and_a_retry_inside_it_is_a_duplicate(store: ObjectStore) -> None:
    config = settings()
    bundles = [one_file(v) for v in range(5)]
    for builder in bundles:
        upload(config, store, builder.build())
    ids = [b.bundle_id for b in bundles]
    before = tree(store)
    summary = Retention(config, store).sweep()
    assert summary.sequences_removed == 3 and summary.failed == 0
    assert {k: summary.objects[k] for k in ("raw_bundle", "result", "journal")} == \
        {"raw_bundle": 3, "result": 3, "journal": 3}
    assert summary.bytes["raw_bundle"] > 0
    ws = f"workspaces/{WS}/"
    assert keys(store, ws + "journal/") == {journal_key(WS, 4), journal_key(WS, 5)}
    assert keys(store, ws + "results/") == {result_key(WS, i) for i in ids[3:]}
    assert keys(store, f"bundles/{WS}/") == {raw_bundle_key(WS, i) for i in ids[3:]}
    assert tree(store) == before, "the tree is never touched"
    assert Retention(config, store).sweep().as_dict()["objects_removed"] == 0, "a second sweep: nothing"

    retried = upload(config, store, bundles[3].build())  # inside the window
    assert retried.duplicate and retried.sequence_number == 4
    head, _ = Sequences(store, WS, 60).read()
    assert head is not None and head.last_sequence == 5

    # outside the window: a numbered bundle is refused before anything is stored ...
    numbered = one_file(1, sequence_number=2)
    with pytest.raises(SequenceMismatch) as refused:
        upload(config, store, numbered.build())
    assert (refused.value.expected, refused.value.received) == (6, 2)
    assert store.head(raw_bundle_key(WS, numbered.bundle_id)) is None
    # ... and an unnumbered one is a new bundle: applied again, at the next number
    again = upload(config, store, bundles[0].build())
    assert not again.duplicate and again.sequence_number == 6
    assert tree(store)["src/0.py"] == b"v0\n"


def test_the_age_window_keeps_what_is_younger(fs_store: ObjectStore) -> None:
    config = settings(retention_keep_sequences=0, retention_max_age_hours=1)
    for version in range(3):
        upload(config, fs_store, one_file(version).build())
    assert Retention(config, fs_store).sweep().sequences_removed == 0, "all younger than an hour"
    later = Retention(config, fs_store).sweep(now=time.time() + 2 * 3600)
    assert later.sequences_removed == 2, "the last sequence always stays"
    both = settings(retention_keep_sequences=2, retention_max_age_hours=1)
    upload(both, fs_store, one_file(9).build())
    assert Retention(both, fs_store).sweep().sequences_removed == 0, "young and among the last two"
    assert Retention(both, fs_store).sweep(now=time.time() + 2 * 3600).sequences_removed == 1, \
        "among the last two, but old: the age rule lets it go (the last stays)"
    for version in range(11, 14):
        upload(both, fs_store, one_file(version).build())
    assert Retention(both, fs_store).sweep().sequences_removed == 2, \
        "young, but beyond the last two: the count rule lets them go"
    off = settings(retention_keep_sequences=0, retention_max_age_hours=0)
    upload(off, fs_store, one_file(10).build())
    assert Retention(off, fs_store).sweep(now=time.time() + 365 * DAY).sequences_removed == 0, \
        "no window set: nothing committed goes"


def test_a_sweep_removes_at_most_a_batch_per_workspace(fs_store: ObjectStore) -> None:
    config = settings(retention_keep_sequences=1, retention_batch=2)
    for version in range(6):
        upload(config, fs_store, one_file(version).build())
    runs = [Retention(config, fs_store).sweep() for _ in range(4)]
    assert [(r.sequences_removed, r.unfinished) for r in runs] == [(2, 1), (2, 1), (1, 0), (0, 0)]
    assert keys(fs_store, f"workspaces/{WS}/journal/") == {journal_key(WS, 6)}


class FailingDelete:
    """A real store whose delete of keys holding `marker` fails once, as a crash there would."""

    def __init__(self, inner: ObjectStore, marker: str) -> None:
        self.inner = inner
        self.marker = marker

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def delete(self, key: str, *, expect: Expect | None = None) -> None:
        if self.marker and self.marker in key:
            self.marker = ""
            raise RuntimeError("the sweep died here")
        self.inner.delete(key, expect=expect)


def test_an_interrupted_sweep_never_answers_a_retry_wrongly(fs_store: ObjectStore) -> None:
    config = settings(retention_keep_sequences=1)
    bundles = [one_file(v) for v in range(3)]
    for builder in bundles:
        upload(config, fs_store, builder.build())
    first, second = bundles[0], bundles[1]
    # died after the raw bundle went, before the result: the retry is still a duplicate
    crashed = Retention(config, FailingDelete(fs_store, "/results/"))  # type: ignore[arg-type]
    assert crashed.sweep().failed == 1
    assert fs_store.head(raw_bundle_key(WS, first.bundle_id)) is None
    retried = upload(config, fs_store, first.build())
    assert retried.duplicate and retried.sequence_number == 1
    # died after the result went, before the journal entry ...
    crashed = Retention(config, FailingDelete(fs_store, "/journal/"))  # type: ignore[arg-type]
    assert crashed.sweep().failed == 1
    assert fs_store.head(result_key(WS, first.bundle_id)) is None
    assert fs_store.head(journal_key(WS, 1)) is not None
    # ... and the forgotten bundle came back meanwhile: committed anew, as sequence 4
    back = upload(config, fs_store, first.build())
    assert not back.duplicate and back.sequence_number == 4
    summary = Retention(config, fs_store).sweep()
    assert summary.sequences_removed == 3 and summary.failed == 0
    assert fs_store.head(raw_bundle_key(WS, first.bundle_id)) is not None, "it is sequence 4's now"
    kept = UploadResult.model_validate_json(fs_store.get(result_key(WS, first.bundle_id)).body)
    assert kept.sequence_number == 4
    assert upload(config, fs_store, first.build()).duplicate
    assert fs_store.head(raw_bundle_key(WS, second.bundle_id)) is None


def test_a_pending_claim_keeps_its_raw_bundle_and_plan(fs_store: ObjectStore) -> None:
    store = fs_store
    config = settings(retention_keep_sequences=1)
    for version in range(3):
        upload(config, store, one_file(version).build())
    stalled = BundleBuilder().created("src/stalled.py", b"s\n").deleted("src/1.py")
    with pytest.raises(InjectedFault):  # planned, then failed: the claim stays pending
        upload(settings(retention_keep_sequences=1, fault_injection="after_plan:raise"), store,
               stalled.build())
    head, _ = Sequences(store, WS, 60).read()
    assert head is not None and head.pending is not None and head.pending.sequence == 4
    # the left-over plan of a committed bundle (its committer died before removing it)
    store.put(plan_key(WS, head.last_bundle_id or ""), b"{}")
    summary = Retention(config, store).sweep()
    assert summary.sequences_removed == 2
    assert store.head(raw_bundle_key(WS, stalled.bundle_id)) is not None
    assert store.head(plan_key(WS, stalled.bundle_id)) is not None
    assert store.head(plan_key(WS, head.last_bundle_id or "")) is not None, "no plan goes while a claim is"
    newer = upload(config, store, one_file(7).build())  # replays the stalled bundle first
    assert newer.sequence_number == 5
    files = tree(store)
    assert files["src/stalled.py"] == b"s\n" and "src/1.py" not in files
    assert upload(config, store, stalled.build()).duplicate
    store.put(stash_key(WS, stalled.bundle_id, "dead-owner", 0), b"late")  # a lost lease's late stash
    store.put(plan_key(WS, stalled.bundle_id), b"{}")
    summary = Retention(config, store).sweep()
    assert summary.objects["stash"] == 1 and summary.objects["plan"] == 2, "with the one planted above"
    assert keys(store, f"workspaces/{WS}/plans/") == set()


def test_expired_intents_and_old_refusals_go_with_their_uploads(s3_store: ObjectStore) -> None:
    config = settings()
    now = time.time()
    ws = workspace_key("", "/work/direct", None)
    request = UploadRequest(workspace_path="/work/direct").model_dump(mode="json")
    for name, expires in (("expired", now - 1), ("live", now + 3600)):
        token = name.ljust(32, "0").encode().hex()[:32]
        record = {"request": request, "token": token, "issued_at": now - DAY, "expires_at": expires}
        s3_store.put(intent_key(ws, name), json.dumps(record).encode())
        s3_store.put(incoming_key(ws, name, token), b"bundle bytes")
    s3_store.put(incoming_key(ws, "expired", "f" * 32), b"an older token's upload")
    for name, age in (("old", 2 * DAY), ("new", 60.0)):
        record = {"bundle_id": name, "refused_at": now - age, "error": {"code": "X", "message": "x"}}
        s3_store.put(refusal_key(ws, name), json.dumps(record).encode())
    summary = Retention(config, s3_store).sweep(now=now)
    assert (summary.objects["intent"], summary.objects["incoming"], summary.objects["refusal"]) == (1, 2, 1)
    assert keys(s3_store, f"workspaces/{ws}/intents/") == {intent_key(ws, "live")}
    assert keys(s3_store, f"incoming/{ws}/") == {incoming_key(ws, "live", "live".ljust(32, "0")
                                                              .encode().hex()[:32])}
    assert keys(s3_store, f"workspaces/{ws}/refused/") == {refusal_key(ws, "new")}


@pytest.mark.parametrize("store", ["filesystem", "moto"], indirect=True)
def test_an_upload_racing_sweeps_loses_nothing(store: ObjectStore) -> None:
    config = settings(retention_keep_sequences=2)
    rounds = 7
    done = threading.Event()
    sweeps: list[int] = []
    errors: list[BaseException] = []

    def sweep_until_done() -> None:
        try:
            while not done.is_set():
                sweeps.append(Retention(config, store).sweep().sequences_removed)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    sweeper = threading.Thread(target=sweep_until_done)
    sweeper.start()
    answers, retries = [], []
    previous: BundleBuilder | None = None
    try:
        for version in range(rounds):
            builder = one_file(version)
            answers.append(upload(config, store, builder.build()))
            if previous is not None:  # the last sequence but one: inside the window
                retries.append(upload(config, store, previous.build()))
            previous = builder
    finally:
        done.set()
        sweeper.join()
    assert not errors, errors
    assert [a.sequence_number for a in answers] == list(range(1, rounds + 1))
    assert all(not a.duplicate for a in answers)
    assert [(r.duplicate, r.sequence_number) for r in retries] == [(True, n) for n in range(1, rounds)]
    assert tree(store) == {f"src/{v % 4}.py": f"v{v}\n".encode() for v in range(rounds - 4, rounds)}
    Retention(config, store).sweep()
    assert keys(store, f"workspaces/{WS}/journal/") == {journal_key(WS, rounds - 1), journal_key(WS, rounds)}
    assert len(sweeps) >= 2, "the sweeps ran while the uploads did"


def test_folders_that_are_no_workspace_key_are_left_alone(fs_store: ObjectStore) -> None:
    fs_store.put("workspaces/not a key/head.json", b"{}")
    summary = Retention(settings(), fs_store).sweep()
    assert summary.workspaces == 0 and summary.as_dict()["objects_removed"] == 0
