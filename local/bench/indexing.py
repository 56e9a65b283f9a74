"""Indexing throughput: a 1,000-file corpus through the pipeline, against raw Qdrant upserts.

The corpus is the first 1,000 Python files (by path) of the installed packages,
uploaded as one bundle through `core.pipeline` on a temporary filesystem store
with the configured embedder and Qdrant (embedded, in memory, by default).
Baseline: the very points that indexing produced, read back with their vectors
and upserted into a fresh collection with the same client and batch size.
"""

from __future__ import annotations

import io
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from core.config import Settings
from core.indexing.indexer import Indexer
from core.models import UploadRequest
from core.pipeline import Pipeline
from core.qdrant import QdrantHandle
from core.storage.filesystem import FilesystemStore
from tests.support.bundles import BundleBuilder

FILES = 1000
COLLECTION = "bench"
BATCH = 256


def corpus(limit: int) -> BundleBuilder:
    site = Path(sysconfig.get_paths()["purelib"])
    builder = BundleBuilder(collection_name=COLLECTION)
    for path in sorted(site.rglob("*.py"))[:limit]:
        builder.created(str(path.relative_to(site)), path.read_bytes())
    return builder


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        settings = Settings(work_dir=root, qdrant_url=":memory:", collection_name=COLLECTION)
        indexer = Indexer(settings, QdrantHandle(settings))
        pipeline = Pipeline(settings, FilesystemStore(Path(root)), indexer)
        raw = corpus(FILES).build()
        indexer.prepare(COLLECTION)  # model load and collection creation are not indexing
        result = pipeline.upload(UploadRequest(workspace_path="/bench/corpus"), io.BytesIO(raw))
        stats = result.indexing
        assert stats is not None
        client = indexer.qdrant.client()
        points, offset = [], None
        while True:
            page, offset = client.scroll(COLLECTION, limit=1024, offset=offset,
                                         with_payload=True, with_vectors=True)
            points.extend(page)
            if offset is None:
                break
        info = client.get_collection(COLLECTION).config.params
        client.create_collection("baseline", vectors_config=info.vectors,
                                 sparse_vectors_config=info.sparse_vectors)
        from qdrant_client import models

        structs = [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points]
        started = time.monotonic()
        for start in range(0, len(structs), BATCH):
            client.upsert("baseline", points=structs[start : start + BATCH], wait=True)
        baseline_ms = (time.monotonic() - started) * 1000
    chunks = stats.points_upserted
    print(f"indexing: {FILES} files, {chunks} chunks, embedder {settings.embedding_model}, "
          f"qdrant {settings.qdrant_url}")
    print(f"  throughput            {chunks / (stats.index_ms / 1000):10.0f} chunks/s")
    print(f"  index step            {stats.index_ms:10.0f} ms  (embed {stats.embed_ms:.0f} ms, "
          f"write {stats.write_ms:.0f} ms)")
    print(f"  raw upsert baseline   {baseline_ms:10.0f} ms  (same points, same client)")
    print(f"  ratio index/baseline  {stats.index_ms / baseline_ms:10.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
