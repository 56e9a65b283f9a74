"""A Qdrant server through qdrant-client (production, clusters); also qdrant-client's
in-process `:memory:` mode, a throwaway engine for tests (it keeps no payload
indexes and is not meant for large collections)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

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
    recorded_lexical,
    refuse,
    stored_point,
)

BATCH = 256
PAGE = 1024


class Serialized:
    """qdrant-client's in-process mode is not made for concurrent callers: this proxy
    lets the threads of one process share it, one call at a time."""

    _lock = threading.RLock()

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


class ServerEngine:
    def __init__(self, client: Any, *, kind: str, ordering: str | None = None,
                 shard_number: int | None = None, replication_factor: int | None = None,
                 write_consistency_factor: int | None = None) -> None:
        from qdrant_client import models

        self.models = models
        self.client = client
        self.kind = kind
        self.ordering = models.WriteOrdering(ordering) if ordering else None
        self.placement = {"shard_number": shard_number, "replication_factor": replication_factor,
                          "write_consistency_factor": write_consistency_factor}

    def ping(self) -> None:
        self.client.get_collections()

    def close(self) -> None:
        self.client.close()

    # collections --------------------------------------------------------------
    def ensure_collection(self, name: str, layout: Layout) -> None:
        m = self.models
        if not self.client.collection_exists(name):
            dense = {DENSE: m.VectorParams(size=layout.dim, distance=m.Distance.COSINE)} if layout.dim else {}
            try:
                self.client.create_collection(
                    name, vectors_config=dense,
                    sparse_vectors_config={LEXICAL: m.SparseVectorParams(modifier=m.Modifier.IDF)},
                    metadata=layout.metadata(), **self.placement)
            except Exception:
                if not self.client.collection_exists(name):  # another instance may have won the race
                    raise
            if self.kind == "server":  # the in-process mode keeps no payload indexes
                for key in PAYLOAD_INDEXES:
                    self.client.create_payload_index(name, key, m.PayloadSchemaType.KEYWORD)
        info = self.client.get_collection(name).config
        vectors = info.params.vectors if isinstance(info.params.vectors, dict) else {}
        sparse = (info.params.sparse_vectors or {}).get(LEXICAL)
        refuse(name, layout.problems(getattr(info, "metadata", None) or {},
                                     vectors[DENSE].size if DENSE in vectors else None,
                                     sparse is not None and sparse.modifier is not None))

    def collection_exists(self, name: str) -> bool:
        return bool(self.client.collection_exists(name))

    def lexical_version(self, name: str) -> str:
        return recorded_lexical(getattr(self.client.get_collection(name).config, "metadata", None) or {})

    # reads --------------------------------------------------------------------
    def retrieve(self, collection: str, ids: list[str], vectors: bool) -> list[StoredPoint]:
        found: list[StoredPoint] = []
        for start in range(0, len(ids), PAGE):
            records = self.client.retrieve(collection, ids=ids[start : start + PAGE],
                                           with_payload=True, with_vectors=vectors)
            found.extend(map(stored_point, records))
        return found

    def scroll(self, collection: str, where: Where | None, vectors: bool) -> Iterator[StoredPoint]:
        offset = None
        while True:
            records, offset = self.client.scroll(collection, scroll_filter=self._filter(where), limit=PAGE,
                                                 offset=offset, with_payload=True, with_vectors=vectors)
            yield from map(stored_point, records)
            if offset is None:
                return

    def count(self, collection: str, where: Where | None, exclude: Where | None = None) -> int:
        return int(self.client.count(collection, count_filter=self._filter(where, exclude), exact=True).count)

    def query(self, collection: str, query: HybridQuery) -> list[ScoredPoint]:
        m = self.models
        where = self._filter(query.where, query.exclude)
        prefetch = []
        if query.sparse[0]:
            prefetch.append(m.Prefetch(query=m.SparseVector(indices=query.sparse[0], values=query.sparse[1]),
                                       using=LEXICAL, filter=where, limit=query.prefetch))
        if query.dense is not None:
            prefetch.append(m.Prefetch(query=query.dense, using=DENSE, filter=where, limit=query.prefetch))
        if not prefetch:
            return []
        response = self.client.query_points(collection, prefetch=prefetch,
                                            query=m.FusionQuery(fusion=m.Fusion.RRF),
                                            limit=query.limit, with_payload=query.payload)
        return [ScoredPoint(str(p.id), float(p.score), p.payload or {}) for p in response.points]

    # writes -------------------------------------------------------------------
    def upsert(self, collection: str, points: list[NewPoint]) -> None:
        m = self.models
        structs = []
        for point in points:
            indices, values = point.sparse
            vector: dict[str, Any] = {LEXICAL: m.SparseVector(indices=indices, values=values)}
            if point.dense is not None:
                vector[DENSE] = point.dense
            structs.append(m.PointStruct(id=point.id, vector=vector, payload=point.payload))
        for start in range(0, len(structs), BATCH):
            self.client.upsert(collection, points=structs[start : start + BATCH], wait=True,
                               ordering=self.ordering)

    def set_payloads(self, collection: str, payloads: dict[str, dict[str, Any]]) -> None:
        m = self.models
        operations = [m.SetPayloadOperation(set_payload=m.SetPayload(payload=payload, points=[pid]))
                      for pid, payload in payloads.items()]
        for start in range(0, len(operations), BATCH):
            self.client.batch_update_points(collection, operations[start : start + BATCH], wait=True,
                                            ordering=self.ordering)

    def delete(self, collection: str, ids: list[str]) -> None:
        for start in range(0, len(ids), PAGE):
            selector = self.models.PointIdsList(points=ids[start : start + PAGE])
            self.client.delete(collection, points_selector=selector, wait=True, ordering=self.ordering)

    def delete_where(self, collection: str, where: Where) -> None:
        selector = self.models.FilterSelector(filter=self._filter(where))
        self.client.delete(collection, points_selector=selector, wait=True, ordering=self.ordering)

    def drop_collection(self, name: str) -> None:
        if self.client.collection_exists(name):
            self.client.delete_collection(name)

    def _filter(self, where: Where | None, exclude: Where | None = None) -> Any:
        return engine_filter(self.models, where, exclude)
