"""Planning asks the store as little as the tree allows (every request is an S3 round
trip): counted on a filesystem store, whose calls are the same ones S3 gets."""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from core.config import Settings
from core.models import UploadRequest
from core.pipeline import Pipeline
from core.storage import FolderEntries, ObjectInfo
from core.storage.filesystem import FilesystemStore
from tests.support.bundles import BundleBuilder

QUERIES = ("head", "is_folder", "list_folder", "list")


class CountingStore(FilesystemStore):
    """Counts the lookups planning makes (from several threads)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: Counter[str] = Counter()
        self.counting = False
        self._lock = threading.Lock()

    def _count(self, name: str, key: str) -> None:
        if self.counting and "/tree/" in key + "/":  # the tree's: not the raw bundle's HEAD, say
            with self._lock:
                self.calls[name] += 1

    def head(self, key: str) -> ObjectInfo | None:
        self._count("head", key)
        return super().head(key)

    def is_folder(self, key: str) -> bool:
        self._count("is_folder", key)
        return super().is_folder(key)

    def list_folder(self, prefix: str) -> FolderEntries:
        self._count("list_folder", prefix)
        return super().list_folder(prefix)

    def list(self, prefix: str, start_after: str = "") -> Iterator[str]:
        self._count("list", prefix)
        return super().list(prefix, start_after)


def lookups(store: CountingStore, pipeline: Pipeline, builder: BundleBuilder) -> dict[str, int]:
    """The tree lookups one upload makes (its plan; nothing else looks into the tree)."""
    store.calls.clear()
    store.counting = True
    try:
        result = pipeline.upload(UploadRequest(workspace_path="/work/requests"), io.BytesIO(builder.build()))
    finally:
        store.counting = False
    assert not result.failures
    return {name: count for name, count in store.calls.items() if name in QUERIES}


def test_new_trees_cost_one_listing_and_known_folders_are_not_asked_again(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    pipeline = Pipeline(Settings(work_dir=str(tmp_path), qdrant_url=":memory:", indexing_enabled=False),
                        store, indexer=None)
    spread = BundleBuilder()
    for i in range(300):  # about one file a folder: no folder but the top ones holds many
        spread.created(f"src/pkg{i % 40}/sub{i % 7}/m{i}.py", b"%d" % i)
    assert lookups(store, pipeline, spread) == {"list_folder": 1}, "a new workspace: the root, empty"

    subtree = BundleBuilder()
    for i in range(20):
        subtree.created(f"src/new/deep/f{i}.py", b"x")
    assert lookups(store, pipeline, subtree) == {"list_folder": 2}, "the root and src: 'new' is not there"

    one = lookups(store, pipeline, BundleBuilder().created("src/pkg1/sub1/another.py", b"y"))
    assert one.get("list_folder", 0) == 0 and one["head"] <= 4, one
