"""Qdrant Edge: Qdrant's own engine (storage format, HNSW, payload indexes, IDF, RRF)
embedded in the process, through qdrant-edge-py. The default of `make run`.

A folder (`QDRANT_URL`) holds one shard per collection:

    <folder>/collections/<name>/shard/            the Edge shard (segments, WAL)
    <folder>/collections/<name>/collection.json   what built it (`Layout.metadata`)

A collection is made in a scratch folder beside it and renamed into place with
its metadata and payload indexes, so a crash leaves either no collection or a
whole one. A shard's WAL is locked by the process that opened it: one process
serves a folder (`make run` runs one worker), as with any embedded database.

HNSW is built when it pays: a shard is optimised in a background thread once
`hnsw_min_points` points were upserted to it since it last was (below that, an
exact scan answers within milliseconds, and optimising costs memory and tens of
seconds of a core). It starts once no write came for `idle_secs`: an upload
whose index step overlapped an optimisation took 2.8 times as long. Qdrant
keeps every point searchable while it optimises, so a query never misses a
fresh point. Only one optimisation runs at a time, on one thread; closing waits
for a running one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import IndexUnavailable
from core.indexing.engines.base import (
    DENSE,
    LEXICAL,
    PAYLOAD_INDEXES,
    HybridQuery,
    Layout,
    NewPoint,
    ScoredPoint,
    StoredPoint,
    Where,
    engine_filter,
    matches,
    recorded_lexical,
    refuse,
    stored_point,
)

log = logging.getLogger(__name__)

BATCH = 512
PAGE = 1024
RRF_K = 2  # a Qdrant server's default, so both engines rank alike
METADATA = "collection.json"
IDLE_SECS = 5.0  # no write for this long before an optimisation starts
SCRATCH = ".creating-"


class IndexFormatOutdated(IndexUnavailable):
    """The folder holds an index of qdrant-client's local mode, which Edge does not read."""


class EdgeEngine:
    kind = "edge"

    def __init__(self, folder: Path, *, hnsw_min_points: int, indexing_threshold_kb: int | None = None,
                 idle_secs: float = IDLE_SECS) -> None:
        import qdrant_edge

        self.qe = qdrant_edge
        self.folder = folder
        self.hnsw_min_points = hnsw_min_points
        # segments smaller than this get no HNSW graph: a scan is as fast (None: Qdrant's default)
        self.indexing_threshold_kb = indexing_threshold_kb
        check_format(folder)
        self.collections = folder / "collections"
        self.collections.mkdir(parents=True, exist_ok=True)
        for leftover in self.collections.glob(SCRATCH + "*"):
            shutil.rmtree(leftover, ignore_errors=True)  # a creation a crash interrupted
        self._shards: dict[str, Any] = {}
        self._dropped: set[str] = set()  # deleted here (`drop_collection`): no optimisation of it
        self._written: dict[str, int] = {}  # points upserted since the last optimisation
        self._optimising: threading.Thread | None = None
        self.idle_secs = idle_secs
        self._last_write = time.monotonic()
        self._closing = threading.Event()
        self._lock = threading.Lock()

    # lifecycle ----------------------------------------------------------------
    def ping(self) -> None:
        if not self.collections.is_dir():
            raise IndexUnavailable(f"the embedded index folder {self.collections} is gone")

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            shards, self._shards = self._shards, {}
            running = self._optimising
        if running is not None:
            running.join()
        for shard in shards.values():
            shard.close()

    # collections --------------------------------------------------------------
    def ensure_collection(self, name: str, layout: Layout) -> None:
        with self._lock:
            if not (self.collections / name).is_dir():
                self._create(name, layout)
            self._dropped.discard(name)
        recorded = json.loads((self.collections / name / METADATA).read_text())
        shard_config = recorded.get("vectors", {})
        refuse(name, layout.problems(recorded, shard_config.get(DENSE), recorded.get("idf", False)))

    def collection_exists(self, name: str) -> bool:
        return (self.collections / name / METADATA).is_file()

    def lexical_version(self, name: str) -> str:
        return recorded_lexical(json.loads((self.collections / name / METADATA).read_text()))

    def _create(self, name: str, layout: Layout) -> None:
        qe = self.qe
        scratch = self.collections / f"{SCRATCH}{uuid.uuid4().hex}"
        dense = qe.EdgeVectorParams(size=layout.dim, distance=qe.Distance.Cosine)
        config = qe.EdgeConfig(
            vectors={DENSE: dense} if layout.dim else None,
            sparse_vectors={LEXICAL: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            # one indexing thread: the other core keeps answering requests
            hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000,
                                           max_indexing_threads=1),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=self.indexing_threshold_kb),
        )
        shard = qe.EdgeShard.create(str(scratch / "shard"), config)
        try:
            for key in PAYLOAD_INDEXES:
                shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
            shard.flush()
        finally:
            shard.close()
        metadata = {**layout.metadata(), "vectors": {DENSE: layout.dim} if layout.dim else {}, "idf": True}
        (scratch / METADATA).write_text(json.dumps(metadata, indent=1))
        os.replace(scratch, self.collections / name)

    def _shard(self, name: str) -> Any:
        with self._lock:
            shard = self._shards.get(name)
            if shard is None:
                if not self.collection_exists(name):
                    raise IndexUnavailable(f"no collection {name!r} in the embedded index")
                shard = self._shards[name] = self._load(name)
            return shard

    def _load(self, name: str) -> Any:
        try:
            return self.qe.EdgeShard.load(str(self.collections / name / "shard"))
        except Exception as exc:
            if "WouldBlock" in str(exc):  # its write-ahead log is locked by another process
                raise IndexUnavailable(
                    f"the embedded index folder {self.folder} is open in another process (a running "
                    "service?): one process at a time can open it; stop that one, or use a Qdrant server"
                ) from exc
            raise

    # reads --------------------------------------------------------------------
    def retrieve(self, collection: str, ids: list[str], vectors: bool) -> list[StoredPoint]:
        shard = self._shard(collection)
        found: list[StoredPoint] = []
        for start in range(0, len(ids), PAGE):
            records = shard.retrieve(ids[start : start + PAGE], with_payload=True, with_vector=vectors)
            found.extend(map(stored_point, records))
        return found

    def scroll(self, collection: str, where: Where | None, vectors: bool) -> Iterator[StoredPoint]:
        shard = self._shard(collection)
        offset = None
        while True:
            records, offset = shard.scroll(self.qe.ScrollRequest(
                offset=offset, limit=PAGE, filter=self._filter(where), with_payload=True,
                with_vector=vectors))
            yield from map(stored_point, records)
            if offset is None:
                return

    def count(self, collection: str, where: Where | None, exclude: Where | None = None) -> int:
        exclude = self._needed(collection, where, exclude)
        request = self.qe.CountRequest(exact=True, filter=self._filter(where, exclude))
        return int(self._shard(collection).count(request))

    def _needed(self, collection: str, where: Where | None, exclude: Where | None) -> Where | None:
        """`exclude`, or None when no point that `where` selects matches it (a workspace's
        points: commit points keep theirs under another key). Edge checks a must_not
        condition point by point once a must condition has selected the points: over a
        workspace of 62,000 chunks a filtered dense query took 25-30 ms with the exclude
        and 6-8 ms without. Counting the points of `where` that match each excluded value
        is a lookup in the payload indexes (0.01-0.1 ms)."""
        if not where or not exclude or any(key in where for key in exclude):
            return exclude
        shard = self._shard(collection)
        for key, value in exclude.items():
            if shard.count(self.qe.CountRequest(exact=True, filter=self._filter({**where, key: value}))):
                return exclude
        return None

    def query(self, collection: str, query: HybridQuery) -> list[ScoredPoint]:
        qe = self.qe
        exclude = self._needed(collection, query.where, query.exclude)
        where = self._filter(query.where, exclude)
        prefetch = []
        if query.sparse[0]:
            prefetch.append(qe.Prefetch(limit=query.prefetch, filter=where, query=qe.Query.Nearest(
                qe.SparseVector(indices=query.sparse[0], values=query.sparse[1]), using=LEXICAL)))
        if query.dense is not None:
            prefetch.append(qe.Prefetch(limit=query.prefetch, filter=where,
                                        query=qe.Query.Nearest(query.dense, using=DENSE)))
        if not prefetch:
            return []
        points = self._shard(collection).query(qe.QueryRequest(
            limit=query.limit, prefetches=prefetch, query=qe.Fusion.Rrf(k=RRF_K), with_payload=query.payload))
        found = [ScoredPoint(str(p.id), float(p.score), p.payload or {}) for p in points]
        if query.exclude and exclude is None and query.payload:  # a point written since the count
            found = [p for p in found if not matches(p.payload, query.exclude)]
        return found

    # writes -------------------------------------------------------------------
    def upsert(self, collection: str, points: list[NewPoint]) -> None:
        qe = self.qe
        shard = self._shard(collection)
        for start in range(0, len(points), BATCH):
            batch = []
            for point in points[start : start + BATCH]:
                vector: dict[str, Any] = {LEXICAL: qe.SparseVector(*point.sparse)}
                if point.dense is not None:
                    vector[DENSE] = point.dense
                batch.append(qe.Point(id=point.id, vector=vector, payload=point.payload))
            shard.update(qe.UpdateOperation.upsert_points(batch))
        self._wrote(collection, len(points))

    def set_payloads(self, collection: str, payloads: dict[str, dict[str, Any]]) -> None:
        shard = self._shard(collection)
        for pid, payload in payloads.items():
            shard.update(self.qe.UpdateOperation.set_payload([pid], payload))
        self._wrote(collection, 0)

    def delete(self, collection: str, ids: list[str]) -> None:
        shard = self._shard(collection)
        for start in range(0, len(ids), PAGE):
            batch: list[Any] = ids[start : start + PAGE]
            shard.update(self.qe.UpdateOperation.delete_points(batch))
        self._wrote(collection, 0)

    def delete_where(self, collection: str, where: Where) -> None:
        shard = self._shard(collection)
        shard.update(self.qe.UpdateOperation.delete_points_by_filter(self._filter(where)))
        self._wrote(collection, 0)

    def drop_collection(self, name: str) -> None:
        """Close the shard and remove its folder: renamed away first, so a crash part-way
        leaves a scratch folder that the next start removes, never half a collection. An
        optimisation of it stops waiting for quiet, and one under way is waited for: its
        shard is about to close."""
        with self._lock:
            self._dropped.add(name)
            running = self._optimising
        if running is not None and running.name == f"optimise {name}":
            running.join()
        with self._lock:
            shard = self._shards.pop(name, None)
            self._written.pop(name, None)
            if shard is not None:
                shard.close()
            folder = self.collections / name
            if not folder.is_dir():
                return
            doomed = self.collections / f"{SCRATCH}{uuid.uuid4().hex}"
            os.replace(folder, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def _filter(self, where: Where | None, exclude: Where | None = None) -> Any:
        return engine_filter(self.qe, where, exclude)

    # HNSW ---------------------------------------------------------------------
    def _wrote(self, collection: str, upserted: int) -> None:
        with self._lock:
            self._last_write = time.monotonic()
            self._written[collection] = self._written.get(collection, 0) + upserted
            due = [c for c, n in self._written.items() if n >= self.hnsw_min_points]
            if not due or (self._optimising is not None and self._optimising.is_alive()):
                return
            self._written[due[0]] = 0
            self._optimising = threading.Thread(target=self._optimise, args=(due[0],),
                                                name=f"optimise {due[0]}", daemon=True)
            self._optimising.start()

    def _optimise(self, collection: str) -> None:
        while not self._closing.wait(min(0.5, self.idle_secs)):
            with self._lock:
                if collection in self._dropped:
                    return
                if time.monotonic() - self._last_write >= self.idle_secs:
                    break
        else:
            return  # closing
        try:
            self._shard(collection).optimize()
        except Exception as exc:  # noqa: BLE001 - an index that is not built yet still answers
            log.warning("optimising the embedded collection %r failed: %s", collection, exc)

    def optimise_now(self, collection: str) -> None:
        """Build HNSW and merge segments now (benchmarks, maintenance)."""
        self._shard(collection).optimize()

    def indexed_vectors(self, collection: str) -> tuple[int, int]:
        """(points, vectors held in an index: sparse ones always, dense ones once in HNSW)."""
        info = self._shard(collection).info()
        return int(info.points_count), int(info.indexed_vectors_count)


def check_format(folder: Path) -> None:
    """Refuse a folder of qdrant-client's local mode, naming what to do; it is left as it is."""
    if (folder / "meta.json").is_file() and (folder / "collection").is_dir():
        raise IndexFormatOutdated(
            f"QDRANT_URL={folder} holds an index in the format of qdrant-client's local mode, which "
            "this version replaced with Qdrant Edge; it was not changed. To go on: move it aside "
            f"(mv {folder} {folder}.local-mode), start again, and re-upload each workspace: remove "
            "the client's sync record (~/.cache/delta-upload/<folder>-*.json) and push again, so "
            "that the whole tree is sent and indexed. The stored trees themselves are untouched."
        )
