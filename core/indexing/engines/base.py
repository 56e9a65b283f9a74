"""What indexing and search need from a vector engine, and nothing more.

Two engines implement it: a Qdrant server through qdrant-client
(`core.indexing.engines.server`, production and clusters; also its in-process
`:memory:` mode, kept as a throwaway engine for tests) and Qdrant Edge, Qdrant's
own engine embedded in the process (`core.indexing.engines.edge`, the default of
`make run`). Both store the same collection layout: a dense vector `dense`
(cosine; absent when EMBEDDING_MODEL=none), a sparse vector `lexical` with the
IDF modifier, keyword payload indexes on every field the service filters on,
and metadata saying what built the collection (`Layout`), checked on each open.

Points cross this interface as plain values (`NewPoint`, `StoredPoint`, ids as
strings), so no engine's classes leak into the pipeline; filters are `Where`:
each key must equal the value, or one of the values of a list, or start with a
`Prefix`; an `exclude` filter drops the points that match any of its keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.errors import DeltaError
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
    """What a collection's vectors were made with; two differing layouts never mix."""

    embedder: str
    dim: int  # 0: no dense vector
    lexical: str = LEXICAL_VERSION

    def metadata(self) -> dict[str, Any]:
        return {"embedder": self.embedder, "dim": self.dim, "layout": LAYOUT, "lexical": self.lexical}

    def problems(self, recorded: dict[str, Any], dense_size: int | None, has_idf: bool) -> list[str]:
        """Why a collection with this metadata and vectors cannot take this layout's points.
        Metadata written before `lexical` was recorded had LEXICAL_UNRECORDED."""
        found = []
        if self.dim and dense_size != self.dim:
            found.append(f"needs a '{DENSE}' vector of size {self.dim}")
        if not self.dim and dense_size:
            found.append("has dense vectors but EMBEDDING_MODEL=none")
        if not has_idf:
            found.append(f"needs a sparse '{LEXICAL}' vector with the IDF modifier")
        embedder = recorded.get("embedder")
        if embedder is not None and embedder != self.embedder:
            found.append(f"was built with embedder {embedder!r}, not {self.embedder!r}")
        lexical = recorded_lexical(recorded)
        if lexical not in LEXICAL_VERSIONS:
            found.append(f"has lexical vectors of version {lexical!r}, which this service does not "
                         f"make (it makes {', '.join(LEXICAL_VERSIONS)})")
        return found


def recorded_lexical(recorded: dict[str, Any]) -> str:
    """The lexical version a collection's metadata records (`core.indexing.lexical`)."""
    return str(recorded.get("lexical", LEXICAL_UNRECORDED))


def refuse(name: str, problems: list[str]) -> None:
    if problems:
        raise CollectionIncompatible(
            f"Qdrant collection {name!r} {'; '.join(problems)}: use another COLLECTION_NAME "
            "or EMBEDDING_MODEL, or re-create the collection"
        )


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
        """Create `name` with `layout`, or check that it has it (CollectionIncompatible)."""
        ...

    def collection_exists(self, name: str) -> bool: ...
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

    # collections, on deletion (`core.deletion`)
    def drop_collection(self, name: str) -> None:
        """Delete the collection and its points if it exists (idempotent)."""
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
