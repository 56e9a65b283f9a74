"""The indexing step of the pipeline: one object per process, Qdrant errors mapped here.

The embedder is loaded on first use (cold starts stay short). Qdrant failures
that a retry can cure become `IndexUnavailable` (503 with Retry-After); a
request Qdrant refuses as malformed is a `ProcessingError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from core.bundle import Bundle
from core.config import Settings
from core.errors import DeltaError, IndexUnavailable, ProcessingError
from core.indexing.commits import COMMIT_WORKSPACE, index_commits
from core.indexing.embedders import Embedder, open_embedder
from core.indexing.embedding_process import Embed, EmbeddingProcess, bulk_embedder, usable_cpus
from core.indexing.engines import IndexEngine, Layout
from core.indexing.sync import IndexTarget, QdrantSync, ReadBefore
from core.models import GitCommit, IndexingStats
from core.qdrant import QdrantHandle
from core.workspace import ApplyPlan

T = TypeVar("T")
WARM_FILES = 32  # a plan writing this many files likely has a batch for the helper


class Indexer:
    def __init__(self, settings: Settings, qdrant: QdrantHandle) -> None:
        self.settings = settings
        self.qdrant = qdrant
        self._embedder: Embedder | None = None
        self._opened: Embedder | None = None  # the one opened here (tests may put another)
        self._helper: EmbeddingProcess | None = None
        self._ready: set[str] = set()
        self._lexical: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = self._opened = open_embedder(self.settings.embedding_model,
                                                              self.settings.embedding_cache_dir)
            return self._embedder

    def _bulk(self) -> Embed:
        """How the index step embeds: large batches in a helper process where that can
        run beside this one (`core.indexing.embedding_process`)."""
        embedder = self.embedder
        with self._lock:
            if (self._helper is None and self.settings.embedding_process and embedder is self._opened
                    and embedder.dim and usable_cpus() >= 2):
                self._helper = EmbeddingProcess(self.settings.embedding_model,
                                                self.settings.embedding_cache_dir, embedder.dim)
            helper = self._helper if embedder is self._opened else None
        return bulk_embedder(embedder, helper)

    def close(self) -> None:
        """Stop the embedding helper process, if one was started."""
        with self._lock:
            helper, self._helper = self._helper, None
        if helper is not None:
            helper.close()

    @property
    def layout(self) -> Layout:
        """What this process's points are made with (`core.indexing.engines.base.Layout`)."""
        return Layout(self.embedder.name, self.embedder.dim)

    def prepare(self, collection: str) -> None:
        """Create or check the collection (once per process and collection)."""
        if collection in self._ready:
            return
        with _qdrant_errors():
            engine = self.qdrant.engine()
            engine.ensure_collection(collection, self.layout)
            self._lexical[collection] = engine.lexical_version(collection)
        self._ready.add(collection)

    @contextmanager
    def _forgotten_on_failure(self, collection: str) -> Iterator[None]:
        """A failed write makes the next upload check the collection again: another
        instance may have deleted it (`core.deletion`), and then the retry re-creates it."""
        try:
            yield
        except Exception:
            self._ready.discard(collection)
            raise

    def lexical_of(self, engine: IndexEngine, collection: str) -> str:
        """The lexical version `collection` was made with: its points are written and
        queried that way (`core.indexing.lexical`); read once per process."""
        version = self._lexical.get(collection)
        if version is None:
            version = self._lexical[collection] = engine.lexical_version(collection)
        return version

    @property
    def max_file_bytes(self) -> int:
        return self.settings.index_max_file_kb * 1024

    def index(self, target: IndexTarget, plan: ApplyPlan, bundle: Bundle, before: ReadBefore,
              fence: Callable[[IndexEngine], IndexEngine] = lambda engine: engine,
              checkpoint: Callable[[str], None] = lambda point: None) -> IndexingStats:
        """Bring `target` in line with `plan`; `before` reads the files the bundle replaces,
        `fence` wraps the engine so that every write is the claim's (`core.fence`)."""
        self.prepare(target.collection)
        engine = self.qdrant.engine()
        embed = self._bulk()
        if self._helper is not None and len(plan.writes) >= WARM_FILES:
            self._helper.warm()
        sync = QdrantSync(fence(engine), self.embedder, target, before, embed=embed,
                          max_file_bytes=self.max_file_bytes,
                          # where metadata.path is indexed, a filter there is cheap
                          scan_paths=engine.kind != "memory",
                          lexical=self._lexical[target.collection])
        with self._forgotten_on_failure(target.collection), _qdrant_errors():
            return sync.run(plan, bundle, checkpoint)

    def index_commits(self, target: IndexTarget, commits: list[GitCommit],
                      fence: Callable[[IndexEngine], IndexEngine] = lambda engine: engine) -> int:
        """Index the commits of a bundle's git history that `target` lacks; how many."""
        self.prepare(target.collection)
        with self._forgotten_on_failure(target.collection), _qdrant_errors():
            return index_commits(fence(self.qdrant.engine()), self.embedder, target.collection,
                                 target.workspace, commits, target.bundle_id, target.sequence,
                                 lexical=self._lexical[target.collection])

    def count_points(self, collection: str, workspace: str) -> int | None:
        """Code points indexed for a workspace, or None when Qdrant cannot say right now."""
        try:
            engine = self.qdrant.engine()
            if not engine.collection_exists(collection):
                return 0
            return engine.count(collection, {"workspace": workspace})  # commits: COMMIT_WORKSPACE
        except Exception:  # noqa: BLE001 - status answers without the count
            return None

    # deletion (core.deletion) ---------------------------------------------
    def delete_workspace_points(self, collection: str, ws: str,
                                fence: Callable[[IndexEngine], IndexEngine] = lambda engine: engine) -> int:
        """Delete every point of workspace `ws` in `collection`: its code (`workspace`) and
        its commits (`commit_workspace`); how many there were. The one way a workspace's
        points are deleted, so a collection being rebuilt is handled in one place."""
        with _qdrant_errors():
            engine = self.qdrant.engine()
            if not engine.collection_exists(collection):
                return 0
            removed = 0
            for where in ({"workspace": ws}, {COMMIT_WORKSPACE: ws}):
                found = engine.count(collection, dict(where))
                if found:
                    fence(engine).delete_where(collection, dict(where))
                    removed += found
            return removed

    def drop_collection(self, collection: str) -> bool:
        """Delete a collection, if it exists; whether it did. This process forgets it was
        prepared, so its next upload there creates it again."""
        with _qdrant_errors():
            engine = self.qdrant.engine()
            existed = engine.collection_exists(collection)
            engine.drop_collection(collection)
        self._ready.discard(collection)
        self._lexical.pop(collection, None)
        return existed

    def call(self, fn: Callable[[IndexEngine], T]) -> T:
        """Run `fn(engine)` with engine errors mapped (for search and status)."""
        with _qdrant_errors():
            return fn(self.qdrant.engine())


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
