"""Qdrant Edge: Qdrant's own engine (storage format, HNSW, payload indexes, IDF, RRF)
embedded in the process, through qdrant-edge-py. The default of `make run`.

A folder (`QDRANT_URL`) holds one shard per physical collection, and the aliases
that serve them:

    <folder>/collections/<physical>/shard/            the Edge shard (segments, WAL)
    <folder>/collections/<physical>/collection.json   what built it (`Layout.metadata`)
    <folder>/aliases.json                             logical name -> physical collection

A collection is made in a scratch folder beside it and renamed into place with
its metadata and payload indexes, so a crash leaves either no collection or a
whole one. The alias file is replaced whole (write, fsync, rename), so a switch
is atomic on disk as in memory. A collection folder named after its logical name
(made before aliases) is moved behind an alias when the folder is opened: the
alias is written first, naming the physical folder, then the folder is renamed;
a crash between leaves an alias whose folder still has the old name, which the
next open renames. A shard's WAL is locked by the process that opened it: one process
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
    is_physical,
    matches,
    physical_name,
    recorded_lexical,
    refuse,
    stored_point,
)

log = logging.getLogger(__name__)

BATCH = 512
PAGE = 1024
RRF_K = 2  # a Qdrant server's default, so both engines rank alike
METADATA = "collection.json"
ALIASES = "aliases.json"
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
        self._aliases: dict[str, str] = self._read_aliases()
        self._move_behind_aliases()
        self._shards: dict[str, Any] = {}
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
            if self._physical(name) is None:
                physical = self._create(name if is_physical(name) else physical_name(name), layout)
                if not is_physical(name):
                    self._set_aliases({**self._aliases, name: physical})
        refuse(name, layout.problems(self.built_with(name)))

    def collection_exists(self, name: str) -> bool:
        return self._physical(name) is not None

    def resolve(self, name: str) -> str | None:
        return self._physical(name)

    def lexical_version(self, name: str) -> str:
        return recorded_lexical(self.built_with(name))

    def built_with(self, name: str) -> dict[str, Any]:
        physical = self._physical(name)
        if physical is None:
            raise IndexUnavailable(f"no collection {name!r} in the embedded index")
        recorded = json.loads((self.collections / physical / METADATA).read_text())
        return {**recorded, "dense": recorded.get("vectors", {}).get(DENSE, 0),
                "idf": recorded.get("idf", False), "aliased": True}

    def logical_collections(self) -> list[str]:
        with self._lock:
            return sorted(name for name, physical in self._aliases.items()
                          if (self.collections / physical / METADATA).is_file())

    def create_physical(self, logical: str, layout: Layout) -> str:
        with self._lock:
            return self._create(physical_name(logical), layout)

    def switch_alias(self, logical: str, physical: str) -> None:
        with self._lock:
            if not (self.collections / physical / METADATA).is_file():
                raise IndexUnavailable(f"no collection {physical!r} in the embedded index")
            self._set_aliases({**self._aliases, logical: physical})

    def drop_physical(self, physical: str) -> None:
        with self._lock:
            if physical in self._aliases.values():
                raise ValueError(f"{physical!r} is being served: drop its alias instead")
            self._drop(physical)

    def drop_collection(self, name: str) -> None:
        with self._lock:
            physical = self._aliases.get(name)
            if physical is not None:
                self._set_aliases({k: v for k, v in self._aliases.items() if k != name})
                self._drop(physical)
            elif is_physical(name):
                self._drop(name)

    def _physical(self, name: str) -> str | None:
        physical = self._aliases.get(name, name)
        return physical if (self.collections / physical / METADATA).is_file() else None

    def _drop(self, physical: str) -> None:
        """Close and remove a physical collection (the lock held)."""
        shard = self._shards.pop(physical, None)
        self._written.pop(physical, None)
        if shard is not None:
            shard.close()
        folder = self.collections / physical
        if folder.is_dir():
            doomed = self.collections / f"{SCRATCH}{uuid.uuid4().hex}"
            os.replace(folder, doomed)  # gone from view at once; removed below or at the next open
            shutil.rmtree(doomed, ignore_errors=True)

    def _read_aliases(self) -> dict[str, str]:
        path = self.folder / ALIASES
        if not path.is_file():
            return {}
        return dict(json.loads(path.read_text())["aliases"])

    def _set_aliases(self, aliases: dict[str, str]) -> None:
        """Replace the alias file whole: the old one or the new one, never a mix."""
        path = self.folder / ALIASES
        temporary = path.with_name(f"{ALIASES}.~tmp~{uuid.uuid4().hex}")
        with temporary.open("w") as handle:
            json.dump({"format": 1, "aliases": aliases}, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        self._aliases = aliases

    def _move_behind_aliases(self) -> None:
        """Serve pre-alias collection folders (named after their logical name) through
        an alias: alias first, then the rename (a crash between is finished here)."""
        for folder in sorted(self.collections.iterdir()):
            name = folder.name
            if name.startswith(SCRATCH) or is_physical(name) or not (folder / METADATA).is_file():
                continue
            physical = self._aliases.get(name)
            if physical is None:
                physical = physical_name(name)
                self._set_aliases({**self._aliases, name: physical})
            if not (self.collections / physical).exists():
                os.replace(folder, self.collections / physical)
                log.warning("embedded collection %r moved behind an alias (physical %r)", name, physical)

    def _create(self, name: str, layout: Layout) -> str:
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
        return name

    def _shard(self, name: str) -> Any:
        with self._lock:
            physical = self._aliases.get(name, name)
            shard = self._shards.get(physical)
            if shard is None:
                if self._physical(name) is None:
                    raise IndexUnavailable(f"no collection {name!r} in the embedded index")
                shard = self._shards[physical] = self._load(physical)
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

    def _filter(self, where: Where | None, exclude: Where | None = None) -> Any:
        return engine_filter(self.qe, where, exclude)

    # HNSW ---------------------------------------------------------------------
    def _wrote(self, collection: str, upserted: int) -> None:
        with self._lock:
            self._last_write = time.monotonic()
            collection = self._aliases.get(collection, collection)  # counted per physical collection
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
