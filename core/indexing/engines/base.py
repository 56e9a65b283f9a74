"""What indexing and search need from a vector engine, and nothing more.

Two engines implement it: a Qdrant server through qdrant-client
(`core.indexing.engines.server`, production and clusters; also its in-process
`:memory:` mode, kept as a throwaway engine for tests) and Qdrant Edge, Qdrant's
own engine embedded in the process (`core.indexing.engines.edge`, the default of
`make run`). Both store the same collection layout: a dense vector `dense`
(cosine; absent when EMBEDDING_MODEL=none), a sparse vector `lexical` with the
IDF modifier, keyword payload indexes on every field the service filters on,
and metadata saying what built the collection (`Layout`), checked on each open.

Collections are served through aliases: a client-facing (logical) name such as
`<tenant>--<name>` is an alias of a physical collection `<logical>~<12 hex>` (`~`
never occurs in a logical name, `core.names`), so a rebuilt index replaces the
served one in one atomic switch (`switch_alias`): a Qdrant alias on a server, an
alias file replaced in one rename on Qdrant Edge. Every call below takes either
name; reads and writes through the logical name follow the switch. A collection
made before aliases existed (a real collection with the logical name) is still
served as it is; Edge moves it behind an alias when it opens the folder, a
server's is moved by its first reindex (`core.reindex`).

Points cross this interface as plain values (`NewPoint`, `StoredPoint`, ids as
strings), so no engine's classes leak into the pipeline; filters are `Where`:
each key must equal the value, or one of the values of a list, or start with a
`Prefix`; an `exclude` filter drops the points that match any of its keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.errors import DeltaError
from core.indexing.chunker import CHUNKER_VERSION
from core.indexing.lexical import BM25, TF
from core.indexing.lexical import VERSIONS as LEXICAL_VERSIONS

DENSE = "dense"
LEXICAL = "lexical"
# keyword payload indexes: the fields that searches, counts and scans filter on
PAYLOAD_INDEXES = ("workspace", "metadata.path", "metadata.language", "chunk_hash", "kind",
                   "commit_workspace")
# how `core.indexing.lexical` turns text into sparse vectors: new collections get
# LEXICAL_VERSION; one made with another known version keeps it (its points are written
# and queried that way), and an unknown version is refused like another embedder
LEXICAL_VERSION = BM25
LEXICAL_UNRECORDED = TF  # what collections made before metadata recorded it hold
LAYOUT = 1
PHYSICAL_MARK = "~"  # separates a physical collection's logical name from its suffix
MAX_LOGICAL_PART = 240  # of the logical name kept in a physical one (Qdrant's limit: 255)

Sparse = tuple[list[int], list[float]]


@dataclass(frozen=True)
class Prefix:
    """A keyword value that starts with `value` (byte-wise, case-sensitive)."""

    value: str


Where = dict[str, "str | list[str] | Prefix"]


class CollectionIncompatible(DeltaError):
    code = "INDEX_INCOMPATIBLE"
    http_status = 409


@dataclass(frozen=True)
class Layout:
    """What a collection's points are made with. A collection records it when it is made
    (`metadata`), and `drift` tells how one differs from what the service runs now."""

    embedder: str
    dim: int  # 0: no dense vector
    lexical: str = LEXICAL_VERSION
    chunker: str = CHUNKER_VERSION

    def metadata(self) -> dict[str, Any]:
        return {"embedder": self.embedder, "dim": self.dim, "layout": LAYOUT, "lexical": self.lexical,
                "chunker": self.chunker}

    def problems(self, info: dict[str, Any]) -> list[str]:
        """Why a collection described by `info` (`IndexEngine.built_with`) cannot take this
        service's points at all. Other vectors are no such reason: the points then go
        without dense vectors (`dense_usable`) until the collection is reindexed."""
        found = []
        if not info.get("idf"):
            found.append(f"needs a sparse '{LEXICAL}' vector with the IDF modifier")
        lexical = recorded_lexical(info)
        if lexical not in LEXICAL_VERSIONS:
            found.append(f"has lexical vectors of version {lexical!r}, which this service does not "
                         f"make (it makes {', '.join(LEXICAL_VERSIONS)})")
        return found

    def dense_usable(self, info: dict[str, Any]) -> bool:
        """Whether this service's dense vectors belong in the collection: same embedder
        (or none recorded, as before metadata existed) and the same size."""
        embedder = info.get("embedder")
        return bool(self.dim) and info.get("dense") == self.dim and embedder in (None, self.embedder)

    def drift(self, info: dict[str, Any]) -> list[str]:
        """How the collection differs from what this service builds now (empty: up to
        date), each a reason to reindex it."""
        found = self.problems(info)
        embedder, dense = info.get("embedder"), info.get("dense")
        if embedder is not None and embedder != self.embedder:
            found.append(f"built with embedder {embedder!r}, the service runs {self.embedder!r}: "
                         "searches use lexical vectors only")
        elif self.dim and dense != self.dim:
            found.append(f"dense vectors of size {dense or 0}, the embedder makes {self.dim}: "
                         "searches use lexical vectors only")
        elif not self.dim and dense:
            found.append("has dense vectors but EMBEDDING_MODEL=none")
        lexical = recorded_lexical(info)
        if lexical in LEXICAL_VERSIONS and lexical != self.lexical:
            found.append(f"lexical vectors of version {lexical!r}, new collections get {self.lexical!r}")
        chunker = info.get("chunker")
        if chunker != self.chunker:
            found.append(f"chunked by {chunker!r}, the service chunks by {self.chunker!r}"
                         if chunker else "records no chunker version (made before it was recorded)")
        if not info.get("aliased", True):
            found.append("served without an alias (made before aliases): reindex it to move it behind one")
        return found


def recorded_lexical(recorded: dict[str, Any]) -> str:
    """The lexical version a collection's metadata records (`core.indexing.lexical`)."""
    return str(recorded.get("lexical", LEXICAL_UNRECORDED))


def refuse(name: str, problems: list[str]) -> None:
    if problems:
        raise CollectionIncompatible(
            f"Qdrant collection {name!r} {'; '.join(problems)}: reindex it "
            "(POST /api/v1/admin/reindex) or use another COLLECTION_NAME"
        )


def physical_name(logical: str) -> str:
    """A new physical collection for `logical`: never a logical name, never reused."""
    return f"{logical[:MAX_LOGICAL_PART]}{PHYSICAL_MARK}{uuid.uuid4().hex[:12]}"


def is_physical(name: str) -> bool:
    return PHYSICAL_MARK in name


@dataclass
class NewPoint:
    id: str
    payload: dict[str, Any]
    sparse: Sparse
    dense: list[float] | None = None


@dataclass
class StoredPoint:
    id: str
    payload: dict[str, Any]
    dense: list[float] | None = None  # only when asked for vectors
    sparse: Sparse | None = None


@dataclass(frozen=True)
class HybridQuery:
    """Dense and lexical candidates (`prefetch` each) fused by reciprocal rank; a query
    without lexical tokens (or without a dense vector) has no candidates of that kind.
    Without `payload` the points come with ids and scores alone (cheaper: a chunk's
    payload holds its text); an engine then leaves checking `exclude` on a point written
    during the query to whoever reads the payloads (`matches`)."""

    sparse: Sparse
    dense: list[float] | None
    where: Where | None
    limit: int
    prefetch: int
    exclude: Where | None = None
    payload: bool = True


@dataclass
class ScoredPoint:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class IndexEngine(Protocol):
    kind: str  # "server", "edge" or "memory": as /health reports it ("server" or "embedded")

    def ping(self) -> None: ...
    def close(self) -> None: ...

    def ensure_collection(self, name: str, layout: Layout) -> None:
        """Create `name` (a physical collection behind the alias `name`) with `layout`, or
        check that the one it names can take points (CollectionIncompatible)."""
        ...

    def collection_exists(self, name: str) -> bool: ...
    def resolve(self, name: str) -> str | None:
        """The physical collection `name` serves from (itself if it is one), or None."""
        ...

    def built_with(self, name: str) -> dict[str, Any]:
        """What built the collection: its `Layout.metadata`, plus `dense` (the dense
        vector's size, 0 if none), `idf` and `aliased` (False: a pre-alias collection)."""
        ...

    def logical_collections(self) -> list[str]:
        """Every served name: aliases, and pre-alias collections served by their own name."""
        ...

    def create_physical(self, logical: str, layout: Layout) -> str:
        """A new, empty physical collection for `logical` (not served until switched to)."""
        ...

    def switch_alias(self, logical: str, physical: str) -> None:
        """Serve `logical` from `physical`, in one atomic step."""
        ...

    def drop_physical(self, physical: str) -> None:
        """Remove a physical collection (idempotent); never one an alias serves."""
        ...

    def drop_collection(self, name: str) -> None:
        """Remove a served name and the physical collection behind it (idempotent)."""
        ...
    def lexical_version(self, name: str) -> str:
        """How the collection's lexical vectors are made (its recorded version)."""
        ...

    def retrieve(self, collection: str, ids: list[str], vectors: bool) -> list[StoredPoint]: ...
    def scroll(self, collection: str, where: Where | None, vectors: bool) -> Iterator[StoredPoint]: ...
    def count(self, collection: str, where: Where | None, exclude: Where | None = None) -> int: ...
    def query(self, collection: str, query: HybridQuery) -> list[ScoredPoint]: ...

    # writes: the ones `core.fence` fences (WRITES)
    def upsert(self, collection: str, points: list[NewPoint]) -> None: ...
    def set_payloads(self, collection: str, payloads: dict[str, dict[str, Any]]) -> None: ...
    def delete(self, collection: str, ids: list[str]) -> None: ...
    def delete_where(self, collection: str, where: Where) -> None:
        """Delete every point that matches `where` (a workspace's, on its deletion)."""
        ...


def engine_filter(models: Any, where: Where | None, exclude: Where | None = None) -> Any:
    """`where` (and not `exclude`) as a filter of `models` (qdrant-client's and
    qdrant-edge's spell it alike)."""
    if not where and not exclude:
        return None

    def conditions(match: Where | None) -> list[Any] | None:
        return [models.FieldCondition(key=key, match=_match(models, value))
                for key, value in match.items()] if match else None

    return models.Filter(must=conditions(where), must_not=conditions(exclude))


def matches(payload: dict[str, Any], exclude: Where) -> bool:
    """Whether a payload matches any key of `exclude` as the engines match it (a dotted key
    is a path into nested objects; a list in the payload matches by any of its items)."""
    for key, wanted in exclude.items():
        value: Any = payload
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and _matched(item, wanted):
                return True
    return False


def _matched(item: str, wanted: str | list[str] | Prefix) -> bool:
    if isinstance(wanted, Prefix):
        return item.startswith(wanted.value)
    return item in wanted if isinstance(wanted, list) else item == wanted


def _match(models: Any, value: str | list[str] | Prefix) -> Any:
    if isinstance(value, Prefix):
        return models.MatchPrefix(prefix=value.value)
    return models.MatchAny(any=value) if isinstance(value, list) else models.MatchValue(value=value)


def stored_point(record: Any) -> StoredPoint:
    """A record of either engine as a `StoredPoint` (ids as strings, vectors as lists)."""
    vectors = record.vector if isinstance(record.vector, dict) else {}
    sparse = vectors.get(LEXICAL)
    dense = vectors.get(DENSE)
    return StoredPoint(
        id=str(record.id), payload=record.payload or {},
        dense=list(dense) if dense is not None else None,
        sparse=(list(sparse.indices), list(sparse.values)) if sparse is not None else None,
    )


WRITES = frozenset({"upsert", "set_payloads", "delete", "delete_where"})
