"""Hybrid search over what was indexed: dense and lexical prefetch fused by RRF in the engine."""

from __future__ import annotations

from dataclasses import dataclass

from core.indexing.commits import COMMIT_KIND
from core.indexing.embedders import Embedder
from core.indexing.engines import HybridQuery, IndexEngine, Where
from core.indexing.lexical import sparse_vector

PREFETCH_FACTOR = 4


@dataclass(frozen=True)
class Hit:
    path: str
    start_line: int
    end_line: int
    score: float
    code: str
    language: str


def hybrid_query(embedder: Embedder, query: str, where: Where | None, limit: int,
                 exclude: Where | None = None) -> HybridQuery:
    """The query text as both halves of a hybrid query, `PREFETCH_FACTOR` x `limit`
    candidates of each half fused."""
    dense = embedder.embed([query])[0] if embedder.dim else None
    return HybridQuery(sparse=sparse_vector(query), dense=dense, where=where or None, limit=limit,
                       prefetch=limit * PREFETCH_FACTOR, exclude=exclude)


def hybrid_search(engine: IndexEngine, embedder: Embedder, collection: str, workspace: str | None,
                  query: str, limit: int) -> list[Hit]:
    """Code chunks (never commits) of `workspace`, or of the whole collection."""
    request = hybrid_query(embedder, query, {"workspace": workspace} if workspace else None, limit,
                           exclude={"kind": COMMIT_KIND})
    hits = []
    for point in engine.query(collection, request):
        meta = point.payload.get("metadata", {})
        hits.append(Hit(path=meta.get("path", ""), start_line=meta.get("start_line", 0),
                        end_line=meta.get("end_line", 0), score=point.score,
                        code=meta.get("code", ""), language=meta.get("language", "")))
    return hits
