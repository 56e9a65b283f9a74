"""The Qdrant collection layout, created on first use and checked on every start.

Named vectors: `dense` (cosine, the embedder's size; absent with EMBEDDING_MODEL=none)
and `lexical` (sparse, with Qdrant's IDF modifier). Collection metadata records
the embedder, so a collection built with another model is refused rather than
silently mixed. Payload indexes are created on the filtered fields (a Qdrant
server only; the embedded mode has none).
"""

from __future__ import annotations

from typing import Any

from core.errors import DeltaError

DENSE = "dense"
LEXICAL = "lexical"
PAYLOAD_INDEXES = ("workspace", "metadata.path", "metadata.language", "chunk_hash")


class CollectionIncompatible(DeltaError):
    code = "INDEX_INCOMPATIBLE"
    http_status = 409


def ensure_collection(
    client: Any, name: str, embedder_name: str, dim: int, *, remote: bool,
    shard_number: int | None, replication_factor: int | None,
    write_consistency_factor: int | None,
) -> None:
    """Create `name` with this service's layout, or check that it already has it."""
    from qdrant_client import models

    if not client.collection_exists(name):
        vectors = {DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)} if dim else {}
        try:
            client.create_collection(
                name,
                vectors_config=vectors,
                sparse_vectors_config={LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                shard_number=shard_number,
                replication_factor=replication_factor,
                write_consistency_factor=write_consistency_factor,
                metadata={"embedder": embedder_name, "dim": dim, "layout": 1},
            )
        except Exception:
            if not client.collection_exists(name):  # another instance may have won the race
                raise
        if remote:
            for field in PAYLOAD_INDEXES:
                client.create_payload_index(name, field, models.PayloadSchemaType.KEYWORD)
    _check(client.get_collection(name), name, embedder_name, dim)


def _check(info: Any, name: str, embedder_name: str, dim: int) -> None:
    params = info.config.params
    vectors = params.vectors if isinstance(params.vectors, dict) else {}
    sparse = params.sparse_vectors or {}
    problems = []
    if dim and (DENSE not in vectors or vectors[DENSE].size != dim):
        problems.append(f"needs a '{DENSE}' vector of size {dim}")
    if not dim and vectors:
        problems.append("has dense vectors but EMBEDDING_MODEL=none")
    if LEXICAL not in sparse or sparse[LEXICAL].modifier is None:
        problems.append(f"needs a sparse '{LEXICAL}' vector with the IDF modifier")
    recorded = (getattr(info.config, "metadata", None) or {}).get("embedder")
    if recorded is not None and recorded != embedder_name:
        problems.append(f"was built with embedder {recorded!r}, not {embedder_name!r}")
    if problems:
        raise CollectionIncompatible(
            f"Qdrant collection {name!r} {'; '.join(problems)}: use another COLLECTION_NAME "
            "or EMBEDDING_MODEL, or re-create the collection"
        )
