"""Reindexing a collection from the stored tree, against indexing the same files by upload.

Why: changing the embedder (or the chunker) means rebuilding every collection from
what storage holds (`core.reindex`), while the service serves; that must cost about
what the uploads that built it cost, not a multiple. The corpus is real code nobody
here wrote, the first FILES Python files of the installed packages, on `make run`'s
settings (filesystem storage, Qdrant Edge in a folder, the default embedder), in
this process:

  baseline  the corpus as one upload through `core.pipeline`: its index step
  measured  a reindex of the collection (`Reindexing.run`): listing and reading
            the stored tree, chunking, embedding, writing a new physical
            collection, and the switch; target <= 1.2x the baseline

Both run with the embedder loaded and its helper process started, the baseline
first: each pays the same chunking and embedding, which dominate.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

from core.config import Settings
from core.indexing.engines import IndexEngine
from core.indexing.indexer import Indexer
from core.models import UploadRequest
from core.pipeline import Pipeline
from core.qdrant import QdrantHandle
from core.reindex import JobState, Reindexing
from core.storage.filesystem import FilesystemStore
from local.bench import common
from local.bench.common import Figure, ratio_figure
from local.bench.indexing import corpus
from tests.support.bundles import BundleBuilder

NAME = "reindex"
FILES = common.sized(2000, 200)
WORKSPACE = "/bench/reindexed"
TARGET = 1.2


def measure(root: Path, body: bytes) -> dict[str, float]:
    settings = Settings(work_dir=str(root / "storage"), qdrant_url=str(root / "qdrant"),
                        collection_name=common.COLLECTION)
    store = FilesystemStore(root / "storage")
    handle = QdrantHandle(settings)
    indexer = Indexer(settings, handle)
    reindexing = Reindexing(settings, store, indexer)
    pipeline = Pipeline(settings, store, indexer, rebuilds=reindexing.building_target)
    logging.getLogger("core").setLevel(logging.WARNING)
    warm = BundleBuilder(collection_name="warm-up")  # another collection: not reindexed
    for n in range(40):  # loads the embedder and starts its helper process
        warm.created(f"warm/w{n}.py", f"def warm_{n}():\n    return {n}\n".encode() * 20)
    pipeline.upload(UploadRequest(workspace_path="/bench/warm"), io.BytesIO(warm.build()))
    started = time.perf_counter()
    stats = pipeline.upload(UploadRequest(workspace_path=WORKSPACE), io.BytesIO(body)).indexing
    upload_s = time.perf_counter() - started
    assert stats is not None
    engine: IndexEngine = handle.engine()
    before = engine.count(common.COLLECTION, None)
    started = time.perf_counter()
    [job] = reindexing.start("", collection_name=common.COLLECTION, run=False)
    job = reindexing.run(job.stored_collection, deadline=time.monotonic() + 3600)  # no wait to retire
    reindex_s = time.perf_counter() - started
    assert job.state == JobState.DONE and engine.resolve(common.COLLECTION) == job.target
    after = engine.count(common.COLLECTION, None)
    assert after == before, (before, after)  # the same points, rebuilt
    handle.close()
    indexer.close()
    return {"index_s": stats.index_ms / 1000, "upload_s": upload_s, "reindex_s": reindex_s,
            "points": after, "files": job.files_done}


def main() -> list[Figure]:
    body = corpus(FILES).build()
    with common.temp_root(NAME) as root:
        measured = measure(root, body)
    index_s, reindex_s = measured["index_s"], measured["reindex_s"]
    figures = [
        ratio_figure(NAME, f"   reindex / upload index step ({FILES:,} real files)", reindex_s / index_s,
                     TARGET, f"reindex {reindex_s:.1f} s ({measured['files']:.0f} files, "
                     f"{measured['points']:,.0f} points, {measured['points'] / reindex_s:,.0f} points/s) / "
                     f"index step {index_s:.1f} s of an upload of {measured['upload_s']:.1f} s"),
    ]
    common.report(figures)
    return figures


if __name__ == "__main__":
    common.run(main)
