"""The indexing step of the pipeline: one object per process, Qdrant errors mapped here.

The embedder is loaded on first use (cold starts stay short). A served
collection name is resolved to its physical collection on every use (`served`),
and writes name the physical one: a reindex may switch the alias meanwhile, and
what a collection was built with decides how its points are made (its lexical
version; dense vectors only where its embedder is the running one, else the
points go lexical-only and its searches too, until it is reindexed). Qdrant failures
that a retry can cure become `IndexUnavailable` (503 with Retry-After); a
request Qdrant refuses as malformed is a `ProcessingError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from core.bundle import Bundle
from core.config import Settings
from core.errors import DeltaError, IndexUnavailable, ProcessingError
from core.indexing.commits import COMMIT_WORKSPACE, index_commits
from core.indexing.embedders import Embedder, NoEmbedder, open_embedder
from core.indexing.embedding_process import Embed, EmbeddingProcess, bulk_embedder, usable_cpus
from core.indexing.engines import IndexEngine, Layout
from core.indexing.engines.base import is_physical, recorded_lexical, refuse
from core.indexing.sync import IndexTarget, QdrantSync, ReadBefore
from core.models import GitCommit, IndexingStats
from core.qdrant import QdrantHandle
from core.workspace import ApplyPlan

T = TypeVar("T")
WARM_FILES = 32  # a plan writing this many files likely has a batch for the helper


@dataclass(frozen=True)
class Served:
    """A collection as one request uses it: the physical collection behind the name now,
    and how its points are made."""

    name: str  # as served (the alias)
    physical: str
    lexical: str  # `core.indexing.lexical` version
    dense: bool  # whether the running embedder's vectors belong in it


class Indexer:
    def __init__(self, settings: Settings, qdrant: QdrantHandle) -> None:
        self.settings = settings
        self.qdrant = qdrant
        self._embedder: Embedder | None = None
        self._opened: Embedder | None = None  # the one opened here (tests may put another)
        self._helper: EmbeddingProcess | None = None
        self._ready: set[str] = set()
        self._built: dict[str, tuple[str, bool]] = {}  # physical -> (lexical, dense): never changes
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

    def prepare(self, collection: str) -> Served:
        """Create the collection if it is missing (checked once per process and name) and
        resolve it (on every call: a reindex may have switched it)."""
        with _qdrant_errors():
            engine = self.qdrant.engine()
            if collection not in self._ready:
                engine.ensure_collection(collection, self.layout)
                self._ready.add(collection)
            try:
                return self.served(engine, collection)
            except IndexUnavailable:  # deleted since (`core.deletion`, another instance): anew
                engine.ensure_collection(collection, self.layout)
                return self.served(engine, collection)

    def served(self, engine: IndexEngine, collection: str) -> Served:
        """`collection` (a served or a physical name) as it is now; `IndexUnavailable` if
        it does not exist."""
        found = self.find(engine, collection)
        if found is None:
            raise IndexUnavailable(f"no collection {collection!r}", retry_after_s=1)
        return found

    def find(self, engine: IndexEngine, collection: str) -> Served | None:
        """`collection` as it is now, or None if it does not exist. A served name is
        resolved on every call; a physical one this process has met is not looked up
        again (it never changes what it holds: a write to one dropped since fails)."""
        physical = collection if is_physical(collection) and collection in self._built else \
            engine.resolve(collection)
        if physical is None:
            return None
        built = self._built.get(physical)
        if built is None:
            info = engine.built_with(physical)
            refuse(collection, self.layout.problems(info))
            built = self._built[physical] = (recorded_lexical(info), self.layout.dense_usable(info))
        return Served(collection, physical, *built)

    def embedder_for(self, served: Served) -> Embedder:
        """The embedder whose vectors `served` takes: none where it was built with another."""
        return self.embedder if served.dense else NoEmbedder()

    @property
    def max_file_bytes(self) -> int:
        return self.settings.index_max_file_kb * 1024

    def index(self, target: IndexTarget, plan: ApplyPlan, bundle: Bundle, before: ReadBefore,
              fence: Callable[[IndexEngine], IndexEngine] = lambda engine: engine,
              checkpoint: Callable[[str], None] = lambda point: None,
              scan_paths: bool | None = None) -> IndexingStats:
        """Bring `target` in line with `plan`; `before` reads the files the bundle replaces,
        `fence` wraps the engine so that every write is the claim's (`core.fence`).
        `target.collection` is a physical collection (`prepare`)."""
        engine = self.qdrant.engine()
        with _qdrant_errors():
            served = self.served(engine, target.collection)
        embedder = self.embedder_for(served)
        embed = self._bulk() if embedder.dim else embedder.embed
        if self._helper is not None and embedder.dim and len(plan.writes) >= WARM_FILES:
            self._helper.warm()
        sync = QdrantSync(fence(engine), embedder, target, before, embed=embed,
                          max_file_bytes=self.max_file_bytes,
                          # where metadata.path is indexed, a filter there is cheap
                          scan_paths=engine.kind != "memory" if scan_paths is None else scan_paths,
                          lexical=served.lexical)
        with _qdrant_errors():
            return sync.run(plan, bundle, checkpoint)

    def index_commits(self, target: IndexTarget, commits: list[GitCommit],
                      fence: Callable[[IndexEngine], IndexEngine] = lambda engine: engine) -> int:
        """Index the commits of a bundle's git history that `target` lacks; how many."""
        engine = self.qdrant.engine()
        with _qdrant_errors():
            served = self.served(engine, target.collection)
            return index_commits(fence(engine), self.embedder_for(served), target.collection,
                                 target.workspace, commits, target.bundle_id, target.sequence,
                                 lexical=served.lexical)

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
            physical = engine.resolve(collection)
            if physical is None:
                return 0
            removed = 0
            for where in ({"workspace": ws}, {COMMIT_WORKSPACE: ws}):
                found = engine.count(physical, dict(where))
                if found:
                    fence(engine).delete_where(physical, dict(where))
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
