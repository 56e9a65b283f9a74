"""Large batches embedded in the helper process give the points an inline run gives, and a
helper that dies costs nothing but time: the batch is embedded in the worker instead."""

from __future__ import annotations

import io
import os
import signal
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.indexing.embedding_process import MIN_TEXTS
from core.indexing.indexer import Indexer
from core.models import UploadRequest
from core.pipeline import Pipeline
from core.qdrant import QdrantHandle
from core.storage.filesystem import FilesystemStore
from tests.support.bundles import BundleBuilder


def real_files(start: int, count: int) -> BundleBuilder:
    """`count` real Python files (code nobody here wrote): one batch of many chunks."""
    site = Path(sysconfig.get_paths()["purelib"])
    builder = BundleBuilder(collection_name="helper")
    for path in sorted(site.rglob("*.py"))[start : start + count]:
        builder.created(path.relative_to(site).as_posix(), path.read_bytes())
    return builder


class Run:
    def __init__(self, root: Path, helper: bool) -> None:
        self.settings = Settings(work_dir=str(root / "storage"), qdrant_url=str(root / "qdrant"),
                                 collection_name="helper", embedding_process=helper)
        self.handle = QdrantHandle(self.settings)
        self.indexer = Indexer(self.settings, self.handle)
        self.pipeline = Pipeline(self.settings, FilesystemStore(root / "storage"), self.indexer)

    def upload(self, builder: BundleBuilder) -> Any:
        return self.pipeline.upload(UploadRequest(workspace_path="/work/helper"), io.BytesIO(builder.build()))

    def points(self) -> dict[str, tuple[Any, ...]]:
        return {p.id: (p.payload["metadata"]["path"], p.payload["chunk_hash"], p.sparse, p.dense)
                for p in self.handle.engine().scroll("helper", None, vectors=True)}

    def close(self) -> None:
        self.indexer.close()
        self.handle.close()


@pytest.fixture
def runs(tmp_path: Path) -> Any:
    made = [Run(tmp_path / "inline", helper=False), Run(tmp_path / "helper", helper=True)]
    yield made
    for run in made:
        run.close()


def test_the_helper_makes_the_same_points_as_the_worker(runs: list[Run]) -> None:
    inline, helper = runs
    builder = real_files(0, 60)
    inline.upload(builder)
    result = helper.upload(builder)
    assert result.indexing is not None and result.indexing.chunks_embedded >= MIN_TEXTS
    assert helper.indexer._helper is not None and helper.indexer._helper._pool is not None  # it was used
    assert helper.points() == inline.points()


def test_a_helper_that_died_is_replaced_and_nothing_is_lost(runs: list[Run]) -> None:
    inline, helper = runs
    first, second = real_files(0, 60), real_files(60, 60)
    helper.upload(first)
    pool = helper.indexer._helper._pool  # type: ignore[union-attr]
    assert pool is not None
    for pid in list(pool._processes):  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGKILL)
    result = helper.upload(second)  # its large batch finds the helper dead
    assert result.indexing is not None and result.indexing.chunks_embedded >= MIN_TEXTS
    inline.upload(first)
    inline.upload(second)
    assert helper.points() == inline.points()
