"""Hybrid search over what was indexed: dense and lexical prefetch fused by RRF in Qdrant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.indexing.collection import DENSE, LEXICAL
from core.indexing.embedders import Embedder
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


def hybrid_search(client: Any, embedder: Embedder, collection: str, workspace: str | None,
                  query: str, limit: int) -> list[Hit]:
    from qdrant_client import models

    where = None
    if workspace:
        where = models.Filter(must=[models.FieldCondition(
            key="workspace", match=models.MatchValue(value=workspace))])
    indices, values = sparse_vector(query)
    prefetch = [models.Prefetch(query=models.SparseVector(indices=indices, values=values),
                                using=LEXICAL, filter=where, limit=limit * PREFETCH_FACTOR)]
    if embedder.dim:
        dense = embedder.embed([query])[0]
        prefetch.append(models.Prefetch(query=dense, using=DENSE, filter=where,
                                        limit=limit * PREFETCH_FACTOR))
    response = client.query_points(collection, prefetch=prefetch,
                                   query=models.FusionQuery(fusion=models.Fusion.RRF),
                                   limit=limit, with_payload=True)
    hits = []
    for point in response.points:
        meta = point.payload.get("metadata", {})
        hits.append(Hit(path=meta.get("path", ""), start_line=meta.get("start_line", 0),
                        end_line=meta.get("end_line", 0), score=float(point.score),
                        code=meta.get("code", ""), language=meta.get("language", "")))
    return hits
