"""Commits as points of the workspace's collection, found by message, files and diff.

One point per (workspace, commit id), with `kind: "commit"`, the workspace under
COMMIT_WORKSPACE and the commit's bounded fields (`core.history`); its text is
embedded and made lexical like a chunk, so the same hybrid query finds it. Code
searches leave these points out (a workspace's code by its `workspace` filter, a
whole collection's by excluding the kind). A
commit already indexed is not embedded again: a resent history costs one lookup.
"""

from __future__ import annotations

import uuid
from typing import Any

from core.history import SUMMARY_FILES, bounded, indexed_text, unique
from core.indexing.embedders import Embedder
from core.indexing.engines import IndexEngine, NewPoint
from core.indexing.lexical import BM25, sparse_vector
from core.models import GitCommit

COMMIT_KIND = "commit"
# the workspace of a commit point: not `workspace`, so a code search of a workspace (a
# `workspace` filter) never meets commits and needs no must_not, which the embedded
# engine checks point by point (3-4x the time of the query over 62,000 chunks)
COMMIT_WORKSPACE = "commit_workspace"
NAMESPACE = uuid.UUID("0b4d5c1e-2a77-4f0e-8d3b-6c9e1f2a7b40")


def commit_point_id(workspace: str, commit_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{workspace}\n{commit_id}"))


def commit_payload(workspace: str, record: dict[str, Any], bundle_id: str, sequence: int) -> dict[str, Any]:
    files = record["files"]
    return {
        COMMIT_WORKSPACE: workspace,
        "kind": COMMIT_KIND,
        "bundle_id": bundle_id,
        "sequence": sequence,
        "commit": {"commit_id": record["commit_id"], "author_name": record["author_name"],
                   "authored_date": record["authored_date"], "message": record["message"],
                   "files": files[:SUMMARY_FILES],
                   "files_truncated": record["files_truncated"] or len(files) > SUMMARY_FILES},
    }


def index_commits(engine: IndexEngine, embedder: Embedder, collection: str, workspace: str,
                  commits: list[GitCommit], bundle_id: str, sequence: int, lexical: str = BM25) -> int:
    """Upsert a point for each commit the collection lacks; the number written."""
    records = [bounded(commit) for commit in unique(commits)]
    ids = [commit_point_id(workspace, record["commit_id"]) for record in records]
    held = {point.id for point in engine.retrieve(collection, ids, vectors=False)} if ids else set()
    todo = [(pid, record) for pid, record in zip(ids, records, strict=True) if pid not in held]
    if not todo:
        return 0
    texts = [indexed_text(record) for _, record in todo]
    dense = embedder.embed(texts) if embedder.dim else [None] * len(texts)
    engine.upsert(collection, [
        NewPoint(id=pid, payload=commit_payload(workspace, record, bundle_id, sequence),
                 sparse=sparse_vector(text, lexical), dense=vector)
        for (pid, record), text, vector in zip(todo, texts, dense, strict=True)])
    return len(todo)
