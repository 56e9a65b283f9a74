"""A bundle whose processing died part-way is finished by the next attempt.

Runs the pipeline on the filesystem backend with a store wrapper that fails on
purpose (a fake, not a mock): storage really is written up to the fault.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.errors import StorageUnavailable, WorkspaceBusy
from core.keys import raw_bundle_key, workspace_key
from core.models import UploadRequest
from core.pipeline import Pipeline
from core.sequences import Sequences
from core.storage import Expect
from core.storage.filesystem import FilesystemStore
from tests.support.bundles import BundleBuilder

WORKSPACE = "/work/recovery"
WS = workspace_key("", WORKSPACE, None)


class Crash(Exception):
    """Stands for the instance dying at this point."""


class FaultyStore:
    """Delegates to a real store; fails `put_file` after `writes_ok` calls, and
    with `dead=True` also fails head writes, as a dead instance cannot release."""

    def __init__(self, inner: FilesystemStore, writes_ok: int, dead: bool = False) -> None:
        self.inner = inner
        self.writes_ok = writes_ok
        self.dead = dead
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_file(self, key: str, source: Path, sha1: str, *, consume: bool = False,
                 expect: Expect | None = None) -> None:
        if self.writes >= self.writes_ok:
            raise Crash("instance died while writing the tree")
        self.writes += 1
        self.inner.put_file(key, source, sha1, consume=consume, expect=expect)

    def put_if_match(self, key: str, body: bytes, etag: str) -> str:
        if self.dead and self.writes >= self.writes_ok:
            raise StorageUnavailable("dead instances write nothing")
        return self.inner.put_if_match(key, body, etag)


def settings(root: Path, **overrides: Any) -> Settings:
    return Settings(work_dir=str(root), qdrant_url=":memory:", **overrides)


def storage_only(config: Settings, store: Any) -> Pipeline:
    return Pipeline(config, store, indexer=None)


def upload(pipeline: Pipeline, bundle: bytes) -> Any:
    return pipeline.upload(UploadRequest(workspace_path=WORKSPACE), io.BytesIO(bundle))


def tree(store: FilesystemStore) -> dict[str, bytes]:
    root = store.root / "workspaces" / WS / "tree"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def ten_files(prefix: str, version: bytes) -> BundleBuilder:
    builder = BundleBuilder()
    for i in range(10):
        builder.created(f"{prefix}/{i}.py", version + str(i).encode())
    return builder


def test_retry_after_a_failure_midway_finishes_the_same_bundle(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    config = settings(tmp_path)
    base = upload(storage_only(config, store), ten_files("src", b"v1").build())
    update = BundleBuilder()
    for i in range(10):
        update.updated(f"src/{i}.py", b"v2" + str(i).encode(), previous=b"v1" + str(i).encode())
    raw = update.build()
    with pytest.raises(Crash):
        upload(storage_only(config, FaultyStore(store, writes_ok=4)), raw)  # type: ignore[arg-type]
    head, _ = Sequences(store, WS, 60).read()
    assert head is not None and head.last_sequence == 1 and head.pending is not None
    result = upload(storage_only(config, store), raw)
    assert result.sequence_number == 2 and not result.duplicate
    assert result.processed_operations.updated == 10, "a replay counts like one clean run"
    assert result.processed_operations.skipped == 0
    assert tree(store) == {f"src/{i}.py": b"v2" + str(i).encode() for i in range(10)}
    assert base.sequence_number == 1
    again = upload(storage_only(config, store), raw)
    assert again.duplicate and again.sequence_number == 2


def test_a_dead_instances_claim_is_replayed_from_the_raw_bundle(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    config = settings(tmp_path, lease_secs=0.5, claim_wait_secs=5)
    stalled = ten_files("old", b"o").build()
    with pytest.raises(Crash):
        upload(storage_only(config, FaultyStore(store, writes_ok=3, dead=True)), stalled)  # type: ignore[arg-type]
    head, _ = Sequences(store, WS, 60).read()
    assert head is not None and head.pending is not None and head.pending.lease_expires_at > 0
    assert (tmp_path / raw_bundle_key(WS, head.pending.bundle_id)).is_file()
    time.sleep(0.6)
    newer = upload(storage_only(config, store), BundleBuilder().created("new.py", b"n").build())
    assert newer.sequence_number == 2, "the stalled bundle keeps number 1"
    files = tree(store)
    assert files["new.py"] == b"n"
    assert all(files[f"old/{i}.py"] == b"o" + str(i).encode() for i in range(10))
    retried = upload(storage_only(config, store), stalled)
    assert retried.duplicate and retried.sequence_number == 1
    assert retried.processed_operations.created == 10


def test_a_live_claim_makes_others_wait_then_answers_busy(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    config = settings(tmp_path, lease_secs=30, claim_wait_secs=0.5)
    with pytest.raises(Crash):
        upload(storage_only(config, FaultyStore(store, writes_ok=0, dead=True)),  # type: ignore[arg-type]
               BundleBuilder().created("a", b"a").build())
    started = time.monotonic()
    with pytest.raises(WorkspaceBusy) as busy:
        upload(storage_only(config, store), BundleBuilder().created("b", b"b").build())
    assert time.monotonic() - started >= 0.5
    assert 1 <= busy.value.retry_after_s <= 30
    assert "Retry-After" in busy.value.headers()
