"""Qdrant writes are fenced too: an instance that lost its lease while indexing adds no point.

Two pipelines (two instances) share one store and one Qdrant engine in this
process (two processes cannot share the embedded engine, and no Qdrant server can
be installed here). A indexes b1 with FAULT_INJECTION=mid_index:sleep=S: after
its first batch of files it stalls past its lease, as a starved instance does.
Meanwhile B is sent b2: it takes b1 over, commits it and applies b2. When A wakes,
its next Qdrant write must be refused (LEASE_LOST), so the points equal those of
a clean run exactly: no chunk of b1's content at a path that holds b2's. On the
filesystem store (writes in sections under the head record's lock) and on moto
(conditions and the lease deadline).
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from pathlib import Path

import pytest

from core.config import Settings
from core.errors import DeltaError
from core.indexing.embedders import Embedder, WordLlamaEmbedder
from core.indexing.engines import IndexEngine, open_engine
from core.indexing.indexer import Indexer
from core.models import UploadRequest, UploadResult
from core.pipeline import Pipeline
from core.qdrant import QdrantHandle
from core.storage import ObjectStore
from core.storage.filesystem import FilesystemStore
from core.storage.s3 import S3Store
from tests.support.bundles import BundleBuilder
from tests.support.moto_server import create_bucket

WORKSPACE = "/work/fenced-index"
COLLECTION = "fenced"
FILES = 200  # more than one batch of files (core.indexing.sync.FILES_PER_BATCH)
B1, B2 = "b1b1b1b1-0000-4000-8000-000000000001", "b2b2b2b2-0000-4000-8000-000000000002"
STALL_SECS = {"filesystem": 8.0, "moto": 14.0}  # past B's takeover and b2, with room


def source(i: int, version: int) -> bytes:
    return (f'def handler_{i}(request):\n    """Version {version} of handler {i}."""\n'
            f"    return respond(request, code={version * 1000 + i})\n").encode()


def bundles() -> list[bytes]:
    b0 = BundleBuilder(collection_name=COLLECTION)
    for i in range(FILES):
        b0.created(f"app/h{i}.py", source(i, 0))
    b1 = BundleBuilder(bundle_id=B1, collection_name=COLLECTION)
    b2 = BundleBuilder(bundle_id=B2, collection_name=COLLECTION)
    for i in range(FILES):
        b1.updated(f"app/h{i}.py", source(i, 1), previous=source(i, 0))
        b2.updated(f"app/h{i}.py", source(i, 2), previous=source(i, 1))
    return [b0.build(), b1.build(), b2.build()]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return WordLlamaEmbedder()


class Instance:
    """One pipeline on `store`, indexing into the shared engine behind `qdrant`."""

    def __init__(self, store: ObjectStore, qdrant: IndexEngine, embedder: Embedder, lease: float,
                 fault: str | None = None) -> None:
        settings = Settings(qdrant_url=":memory:", collection_name=COLLECTION, lease_secs=lease,
                            claim_wait_secs=60, fault_injection=fault)
        handle = QdrantHandle(settings)
        handle.use(qdrant)  # the instances share one engine, as they would share a server
        indexer = Indexer(settings, handle)
        indexer._embedder = embedder
        self.pipeline = Pipeline(settings, store, indexer)

    def upload(self, body: bytes) -> UploadResult:
        request = UploadRequest(workspace_path=WORKSPACE, collection_name=COLLECTION)
        return self.pipeline.upload(request, io.BytesIO(body))


def points(qdrant: IndexEngine) -> set[tuple[str, str, str]]:
    return {(p.id, p.payload["metadata"]["path"], p.payload["metadata"]["file_hash"])
            for p in qdrant.scroll(COLLECTION, None, vectors=False)}


def memory_engine() -> IndexEngine:
    """One in-process engine that several instances share, as they would share a server."""
    return open_engine(Settings(qdrant_url=":memory:"))


def two_stores(kind: str, root: Path, request: pytest.FixtureRequest) -> tuple[ObjectStore, ObjectStore]:
    """Two instances' own clients of one store."""
    if kind == "filesystem":
        return FilesystemStore(root), FilesystemStore(root)
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"fence-{uuid.uuid4().hex[:12]}"
    create_bucket(endpoint, bucket)
    stores = [S3Store(bucket, "svc", endpoint_url=endpoint, region=None, addressing_style="path",
                      max_connections=8, scratch_dir=root / name, timeout_secs=0.4) for name in "ab"]
    return stores[0], stores[1]


@pytest.mark.parametrize("kind", ["filesystem", "moto"])
def test_an_instance_stalled_while_indexing_adds_no_point_after_a_takeover(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, embedder: Embedder
) -> None:
    b0, b1, b2 = bundles()
    lease = 3.0
    clean_qdrant = memory_engine()
    clean = Instance(FilesystemStore(tmp_path / "clean"), clean_qdrant, embedder, lease)
    for body in (b0, b1, b2):
        clean.upload(body)

    qdrant = memory_engine()
    store_a, store_b = two_stores(kind, tmp_path / "shared", request)
    a = Instance(store_a, qdrant, embedder, lease, fault=f"mid_index:sleep={STALL_SECS[kind]}:{B1}")
    b = Instance(store_b, qdrant, embedder, lease)
    a.upload(b0)
    outcome: list[BaseException | UploadResult] = []

    def run_a() -> None:
        try:
            outcome.append(a.upload(b1))
        except DeltaError as exc:
            outcome.append(exc)

    stalled_a = threading.Thread(target=run_a)
    started = time.monotonic()
    stalled_a.start()
    time.sleep(1.0)  # A has claimed b1 and is indexing it
    applied = b.upload(b2)  # waits out A's lease, takes b1 over, then applies b2
    assert stalled_a.is_alive() and time.monotonic() - started < STALL_SECS[kind], "A woke before B was done"
    stalled_a.join(timeout=120)
    assert applied.sequence_number == 3
    assert isinstance(outcome[0], DeltaError) and outcome[0].code == "LEASE_LOST", outcome
    assert points(qdrant) == points(clean_qdrant)
