"""Indexing throughput: a 1,000-file corpus through the pipeline, against raw Qdrant upserts.

Why: indexing is the costly part of an upload; this tells how much of it is our
chunking and embedding rather than Qdrant's own writing. The corpus is the first
1,000 Python files (by path) of the installed packages, uploaded as one bundle
through `core.pipeline` in this process, on a temporary filesystem store with
the configured embedder and Qdrant (embedded, in memory). Baseline: the very
points that indexing produced, read back with their vectors and upserted into a
fresh collection with the same client and batch size. Both figures are
informational (no target).
"""

from __future__ import annotations

import io
import logging
import sysconfig
import time
from pathlib import Path

from qdrant_client import models

from core.config import Settings
from core.indexing.indexer import Indexer
from core.models import UploadRequest
from core.pipeline import Pipeline
from core.qdrant import QdrantHandle
from core.storage.filesystem import FilesystemStore
from local.bench import common
from local.bench.common import Figure, ratio_figure
from tests.support.bundles import BundleBuilder

NAME = "indexing"
FILES = common.sized(1000, 200)
BATCH = 256


def corpus(limit: int) -> BundleBuilder:
    site = Path(sysconfig.get_paths()["purelib"])
    builder = BundleBuilder(collection_name=common.COLLECTION)
    for path in sorted(site.rglob("*.py"))[:limit]:
        builder.created(str(path.relative_to(site)), path.read_bytes())
    return builder


def main() -> list[Figure]:
    with common.temp_root(NAME) as root:
        settings = Settings(work_dir=str(root), qdrant_url=":memory:", collection_name=common.COLLECTION)
        indexer = Indexer(settings, QdrantHandle(settings))
        pipeline = Pipeline(settings, FilesystemStore(root), indexer)
        raw = corpus(FILES).build()
        indexer.prepare(common.COLLECTION)  # model load and collection creation are not indexing
        logging.getLogger("core").setLevel(logging.WARNING)  # wordllama's import set the root to INFO
        stats = pipeline.upload(UploadRequest(workspace_path="/bench/corpus"), io.BytesIO(raw)).indexing
        assert stats is not None
        client = indexer.qdrant.client()
        points, offset = [], None
        while True:
            page, offset = client.scroll(common.COLLECTION, limit=1024, offset=offset,
                                         with_payload=True, with_vectors=True)
            points.extend(page)
            if offset is None:
                break
        info = client.get_collection(common.COLLECTION).config.params
        client.create_collection("baseline", vectors_config=info.vectors,
                                 sparse_vectors_config=info.sparse_vectors)
        structs = [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points]
        started = time.perf_counter()
        for start in range(0, len(structs), BATCH):
            client.upsert("baseline", points=structs[start : start + BATCH], wait=True)
        baseline_ms = (time.perf_counter() - started) * 1000
    chunks = stats.points_upserted
    figures = [
        Figure(NAME, f"   indexing throughput ({FILES:,} files, {chunks:,} chunks)",
               f"{chunks / (stats.index_ms / 1000):.0f} ch/s", "—", None,
               f"index step {stats.index_ms:.0f} ms (embed {stats.embed_ms:.0f} ms, write "
               f"{stats.write_ms:.0f} ms); embedder {settings.embedding_model}, "
               f"qdrant {settings.qdrant_url}"),
        ratio_figure(NAME, "   indexing / raw Qdrant upsert of the same points", stats.index_ms / baseline_ms,
                     None, f"{stats.index_ms:.0f} ms / {baseline_ms:.0f} ms (same points, same client, "
                     f"batches of {BATCH})"),
    ]
    common.report(figures)
    return figures


if __name__ == "__main__":
    common.run(main)
