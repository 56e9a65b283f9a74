"""The existing client's real bundles, indexed into a persistent embedded Qdrant.

`tests/fixtures/ce-client/` holds what the Context-Engine client's watch loop sent
(README of ../shared/fixtures): a first sync, a pure rename, a folder rename, a
rename with an edit plus a delete, and a bundle of git history only. Applied in
order they must leave exactly `expected-tree-after-1-4.json`, the renames must
embed nothing (their vectors are re-pointed), and the index must hold exactly
the chunks of the tree's files, each carrying the client's local path.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.indexing.embedders import Embedder, WordLlamaEmbedder
from core.indexing.indexer import Indexer
from core.keys import workspace_key
from core.models import UploadRequest, UploadResult
from core.pipeline import Pipeline
from core.qdrant import QdrantHandle
from core.storage.filesystem import FilesystemStore
from tests.functional.test_indexing import CountingEmbedder
from tests.support.bundles import BundleBuilder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ce-client"
WORKSPACE = "/work/shop"
REPO_ID = "git:0123456789abcdef"
HOST_ROOT = "/home/dev/shop"
COLLECTION = "shop-8d9001d3"
WS = workspace_key("", WORKSPACE, REPO_ID)


def fixture(number: int) -> bytes:
    return next(FIXTURES.glob(f"ce-{number}-*.tar.gz")).read_bytes()


def expected_tree() -> dict[str, str]:
    tree: dict[str, str] = json.loads((FIXTURES / "expected-tree-after-1-4.json").read_text())
    return tree


class Service:
    """The pipeline on the filesystem backend with a Qdrant folder, as `make run` has it."""

    def __init__(self, root: Path, embedder: Embedder) -> None:
        settings = Settings(work_dir=str(root / "storage"), qdrant_url=str(root / "qdrant"))
        self.handle = QdrantHandle(settings)
        self.embedder = CountingEmbedder(embedder)
        indexer = Indexer(settings, self.handle)
        indexer._embedder = self.embedder
        self.root = root / "storage"
        self.pipeline = Pipeline(settings, FilesystemStore(self.root), indexer)

    def upload(self, body: bytes) -> UploadResult:
        request = UploadRequest(workspace_path=WORKSPACE, collection_name=COLLECTION, source_path=HOST_ROOT,
                                logical_repo_id=REPO_ID)
        return self.pipeline.upload(request, io.BytesIO(body))

    def tree(self) -> dict[str, bytes]:
        base = self.root / "workspaces" / WS / "tree"
        return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}

    def points(self) -> list[dict[str, Any]]:
        return [p.payload for p in self.handle.engine().scroll(COLLECTION, None, vectors=False)]


@pytest.fixture(scope="module")
def wordllama() -> Embedder:
    return WordLlamaEmbedder()


@pytest.fixture
def service(tmp_path: Path, wordllama: Embedder) -> Iterator[Service]:
    made = Service(tmp_path, wordllama)
    yield made
    made.handle.close()


def test_the_watch_loop_bundles_leave_the_expected_tree_and_renames_embed_nothing(service: Service) -> None:
    results = [service.upload(fixture(n)) for n in range(1, 6)]
    counts = [{k: v for k, v in r.processed_operations.model_dump().items() if v} for r in results]
    assert counts == [{"created": 7}, {"moved": 1}, {"moved": 3},
                      {"created": 1, "updated": 1, "deleted": 2}, {}]
    assert [r.sequence_number for r in results] == [1, 2, 3, 4, 5]
    assert all(r.failures == [] for r in results)
    for rename in results[1:3]:
        assert rename.indexing is not None
        assert rename.indexing.chunks_embedded == 0 and rename.indexing.points_repointed > 0
    tree = service.tree()
    assert {p: "sha1:" + hashlib.sha1(b).hexdigest() for p, b in tree.items()} == expected_tree()
    everything = service.points()
    points = [p for p in everything if p.get("kind") != "commit"]
    assert sorted(p["commit"]["commit_id"] for p in everything if p.get("kind") == "commit") == [
        "1023c3cf331c2a4cb0e2ba8bf4c519c4ca72f5f7", "1e200858d6393434c33e6b7003c32dcd9ed610c9"]
    indexed = {p["metadata"]["path"] for p in points}
    assert indexed == set(tree)
    for point in points:
        meta = point["metadata"]
        assert meta["code"] in tree[meta["path"]].decode(), meta["path"]
        assert meta["host_path"] == f"{HOST_ROOT}/{meta['path']}"


def test_a_rename_then_a_new_file_at_the_old_path_keeps_both_indexed(service: Service) -> None:
    """The client's shape of `git mv a b` followed by a new `a`: b keeps a's vectors
    (re-pointed, not embedded) and a gets its own."""
    old = b"def parse(line):\n    return line.split(':')\n"
    new = b"def render(rows):\n    return '\\n'.join(rows)\n"
    service.upload(BundleBuilder(workspace_path=WORKSPACE).created("a.py", old).build())
    service.embedder.texts = 0
    chain = (BundleBuilder(workspace_path=WORKSPACE).created("b.py", old).moved("a.py", "b.py", old)
             .deleted("a.py").created("a.py", new))
    result = service.upload(chain.build())
    assert {k: v for k, v in result.processed_operations.model_dump().items() if v} == {
        "moved": 1, "updated": 1}
    assert service.tree() == {"a.py": new, "b.py": old}
    assert service.embedder.texts == 1  # only the new a.py
    by_path = {p["metadata"]["path"]: p["metadata"]["code"] for p in service.points()}
    assert by_path == {"a.py": new.decode(), "b.py": old.decode()}
