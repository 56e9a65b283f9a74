"""Vector engines behind one protocol (`base.IndexEngine`), chosen by `QDRANT_URL`:

    http(s)://host:port   a Qdrant server (qdrant-client; QDRANT_API_KEY)
    :memory:              qdrant-client's in-process mode: a throwaway engine for tests
    a folder path         Qdrant Edge embedded in the process, persisted there
"""

from __future__ import annotations

from pathlib import Path

from core.config import Settings
from core.indexing.engines.base import (
    DENSE,
    LEXICAL,
    CollectionIncompatible,
    HybridQuery,
    IndexEngine,
    Layout,
    NewPoint,
    Prefix,
    ScoredPoint,
    Sparse,
    StoredPoint,
    Where,
)

__all__ = ["DENSE", "LEXICAL", "CollectionIncompatible", "HybridQuery", "IndexEngine", "Layout",
           "NewPoint", "Prefix", "ScoredPoint", "Sparse", "StoredPoint", "Where", "is_remote", "open_engine"]


def is_remote(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def open_engine(settings: Settings) -> IndexEngine:
    """The engine `QDRANT_URL` names; its library is imported here, on first use only."""
    url = settings.qdrant_url
    if is_remote(url) or url == ":memory:":
        from qdrant_client import QdrantClient

        from core.indexing.engines.server import Serialized, ServerEngine

        if url == ":memory:":
            return ServerEngine(Serialized(QdrantClient(location=":memory:")), kind="memory")
        # bounded inside the lease, like storage requests (core.fence)
        client = QdrantClient(url=url, api_key=settings.qdrant_api_key, timeout=settings.qdrant_timeout)
        return ServerEngine(client, kind="server", ordering=settings.qdrant_write_ordering,
                            shard_number=settings.qdrant_shard_number,
                            replication_factor=settings.qdrant_replication_factor,
                            write_consistency_factor=settings.qdrant_write_consistency_factor)
    from core.indexing.engines.edge import EdgeEngine

    return EdgeEngine(Path(url.removeprefix("file://")), hnsw_min_points=settings.index_hnsw_min_points)
