"""Reading what an engine holds, from outside the service that wrote it."""

from __future__ import annotations

from core.config import Settings
from core.indexing.engines import StoredPoint, open_engine


def stored_points(qdrant_url: str, collection: str) -> list[StoredPoint]:
    """Every point (with its payload) in `collection` of the engine at `qdrant_url` (a folder: the
    service that wrote it must have stopped, since an embedded folder has one owner)."""
    engine = open_engine(Settings(qdrant_url=qdrant_url))
    try:
        if not engine.collection_exists(collection):
            return []
        return list(engine.scroll(collection, None, vectors=False))
    finally:
        engine.close()
