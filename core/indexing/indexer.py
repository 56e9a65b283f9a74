"""The indexing step of the pipeline: one object per process, Qdrant errors mapped here.

The embedder is loaded on first use (cold starts stay short). Qdrant failures
that a retry can cure become `IndexUnavailable` (503 with Retry-After); a
request Qdrant refuses as malformed is a `ProcessingError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from core.bundle import Bundle
from core.config import Settings
from core.errors import DeltaError, IndexUnavailable, ProcessingError
from core.indexing.collection import ensure_collection
from core.indexing.embedders import Embedder, open_embedder
from core.indexing.sync import IndexTarget, QdrantSync, ReadBefore
from core.models import IndexingStats
from core.qdrant import QdrantHandle, is_remote
from core.workspace import ApplyPlan

T = TypeVar("T")


class Indexer:
    def __init__(self, settings: Settings, qdrant: QdrantHandle) -> None:
        self.settings = settings
        self.qdrant = qdrant
        self._embedder: Embedder | None = None
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = open_embedder(self.settings.embedding_model,
                                               self.settings.embedding_cache_dir)
            return self._embedder

    def prepare(self, collection: str) -> None:
        """Create or check the collection (once per process and collection)."""
        if collection in self._ready:
            return
        embedder = self.embedder
        with _qdrant_errors():
            ensure_collection(
                self.qdrant.client(), collection, embedder.name, embedder.dim,
                remote=is_remote(self.settings.qdrant_url),
                shard_number=self.settings.qdrant_shard_number,
                replication_factor=self.settings.qdrant_replication_factor,
                write_consistency_factor=self.settings.qdrant_write_consistency_factor,
            )
        self._ready.add(collection)

    @property
    def max_file_bytes(self) -> int:
        return self.settings.index_max_file_kb * 1024

    def index(self, target: IndexTarget, plan: ApplyPlan, bundle: Bundle, before: ReadBefore,
              fence: Callable[[Any], Any] = lambda client: client,
              checkpoint: Callable[[str], None] = lambda point: None) -> IndexingStats:
        """Bring `target` in line with `plan`; `before` reads the files the bundle replaces,
        `fence` wraps the client so that every write is the claim's (`core.fence`)."""
        self.prepare(target.collection)
        sync = QdrantSync(fence(self.qdrant.client()), self.embedder, target, before,
                          max_file_bytes=self.max_file_bytes,
                          ordering=self.settings.qdrant_write_ordering,
                          # a server indexes metadata.path, so a filter there is cheap
                          scan_paths=is_remote(self.settings.qdrant_url))
        with _qdrant_errors():
            return sync.run(plan, bundle, checkpoint)

    def count_points(self, collection: str, workspace: str) -> int | None:
        """Points indexed for a workspace, or None when Qdrant cannot say right now."""
        from qdrant_client import models

        where = models.Filter(must=[models.FieldCondition(
            key="workspace", match=models.MatchValue(value=workspace))])
        try:
            client = self.qdrant.client()
            if not client.collection_exists(collection):
                return 0
            return int(client.count(collection, count_filter=where, exact=True).count)
        except Exception:  # noqa: BLE001 - status answers without the count
            return None

    def call(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(client)` with Qdrant errors mapped (for search and status)."""
        with _qdrant_errors():
            return fn(self.qdrant.client())


@contextmanager
def _qdrant_errors() -> Iterator[None]:
    try:
        yield
    except DeltaError:
        raise
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            raise ProcessingError(f"Qdrant refused a request ({status})") from exc
        raise IndexUnavailable(f"Qdrant is unavailable ({type(exc).__name__})",
                               retry_after_s=5) from exc
