"""A Qdrant server through qdrant-client (production, clusters); also qdrant-client's
in-process `:memory:` mode, a throwaway engine for tests (it keeps no payload
indexes and is not meant for large collections).

Served names are Qdrant aliases of physical collections; point requests name the
alias and Qdrant resolves it on each request, so a switch (one
`update_collection_aliases` call, atomic in Qdrant) moves reads and writes at once.
A pre-alias collection (a real collection with the served name) is served as it
is until its first reindex, whose switch deletes it and creates the alias in its
place: Qdrant cannot rename a collection, nor create an alias while a collection
holds the name, so for that one switch the name is unserved between two requests:
a search that falls in between finds no collection (an empty answer for a workspace,
404 for a collection), an upload a retryable 503."""

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
    is_physical,
    physical_name,
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
        if self.resolve(name) is None:
            physical = name if is_physical(name) else physical_name(name)
            self._create(physical, layout)
            if physical != name:
                try:
                    self._alias_operations([self.models.CreateAliasOperation(
                        create_alias=self.models.CreateAlias(collection_name=physical, alias_name=name))])
                except Exception:
                    self.client.delete_collection(physical)
                    if self.resolve(name) is None:  # not another instance's alias: a real failure
                        raise
        refuse(name, layout.problems(self.built_with(name)))

    def _create(self, physical: str, layout: Layout) -> None:
        m = self.models
        dense = {DENSE: m.VectorParams(size=layout.dim, distance=m.Distance.COSINE)} if layout.dim else {}
        self.client.create_collection(
            physical, vectors_config=dense,
            sparse_vectors_config={LEXICAL: m.SparseVectorParams(modifier=m.Modifier.IDF)},
            metadata=layout.metadata(), **self.placement)
        if self.kind == "server":  # the in-process mode keeps no payload indexes
            for key in PAYLOAD_INDEXES:
                self.client.create_payload_index(physical, key, m.PayloadSchemaType.KEYWORD)

    def collection_exists(self, name: str) -> bool:
        return self.resolve(name) is not None

    def _aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def resolve(self, name: str) -> str | None:
        aliases = self._aliases()
        if name in aliases:
            return aliases[name]
        return name if self.client.collection_exists(name) else None

    def lexical_version(self, name: str) -> str:
        return recorded_lexical(self.built_with(name))

    def built_with(self, name: str) -> dict[str, Any]:
        physical = name if is_physical(name) else self.resolve(name)  # a physical one: no lookup
        if physical is None:
            raise ValueError(f"no collection {name!r}")
        info = self.client.get_collection(physical).config
        vectors = info.params.vectors if isinstance(info.params.vectors, dict) else {}
        sparse = (info.params.sparse_vectors or {}).get(LEXICAL)
        return {**(getattr(info, "metadata", None) or {}),
                "dense": vectors[DENSE].size if DENSE in vectors else 0,
                "idf": sparse is not None and sparse.modifier is not None,
                "aliased": physical != name or is_physical(name)}

    def logical_collections(self) -> list[str]:
        aliases = self._aliases()
        served = set(aliases.values())
        legacy = [c.name for c in self.client.get_collections().collections
                  if not is_physical(c.name) and c.name not in served]
        return sorted([*aliases, *legacy])

    def create_physical(self, logical: str, layout: Layout) -> str:
        physical = physical_name(logical)
        self._create(physical, layout)
        return physical

    def switch_alias(self, logical: str, physical: str) -> None:
        m = self.models
        create = m.CreateAliasOperation(
            create_alias=m.CreateAlias(collection_name=physical, alias_name=logical))
        aliases = self._aliases()
        if logical in aliases:
            if aliases[logical] != physical:
                self._alias_operations([m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=logical)),
                                        create])
            return
        if self.client.collection_exists(logical):  # pre-alias: the name is unserved between these two
            self.client.delete_collection(logical)
        # an upload in that gap may have made the name anew (`Indexer.prepare`): its points
        # went into `physical` too (it reads the job, which is switching), so the alias is
        # moved over in one step and the collection it made goes
        delete = m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=logical))
        for attempt in range(2):
            made = self._aliases().get(logical)
            try:
                self._alias_operations([create] if made is None else [delete, create])
            except Exception:
                if attempt:
                    raise
                continue  # made meanwhile, after the look: look again
            if made is not None and made != physical:
                self.client.delete_collection(made)
            return

    def drop_physical(self, physical: str) -> None:
        if physical in self._aliases().values():
            raise ValueError(f"{physical!r} is being served: drop its alias instead")
        self.client.delete_collection(physical)

    def drop_collection(self, name: str) -> None:
        aliases = self._aliases()
        if name in aliases:
            m = self.models
            self._alias_operations([m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=name))])
            self.client.delete_collection(aliases[name])
        elif self.client.collection_exists(name):
            self.client.delete_collection(name)

    def _alias_operations(self, operations: list[Any]) -> None:
        self.client.update_collection_aliases(change_aliases_operations=operations)

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

    def _filter(self, where: Where | None, exclude: Where | None = None) -> Any:
        return engine_filter(self.models, where, exclude)
