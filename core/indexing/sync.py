"""Bringing Qdrant in line with one bundle's plan: exactly the work the delta needs.

Point ids are UUIDv5 of (workspace, path, chunk text hash, occurrence), so the
same content at the same path always has the same id. For each written file
the wanted ids are compared with the ids Qdrant already holds: only missing
chunks are built, and their dense vectors are first looked up by chunk hash
among the points of the file it was moved from (a file moved with content costs
no embedding); the rest are embedded. New points are written before stale ones
are deleted, so a file never drops out of search mid-update. A move without
content re-creates the source's points at the destination with their stored
vectors. Deleted paths lose their points.

The points a path held are found by id, never by scanning: they are the ids of
the chunks of the bytes the tree held there before the bundle (`before`), which
are exactly what was indexed, since every committed bundle was indexed before
its tree writes. Looking them up costs the same in a 50-file workspace as in a
50,000-file one, also in Qdrant's embedded mode, which has no payload indexes
and evaluates a filter on every point. Where Qdrant does index `metadata.path`
(a server), a filtered scroll is added as well, so points left by an older
chunker are still found. A retry after `execute` ran part-way may read a
path's new bytes or none; by then an earlier attempt finished this step, so the
old points are gone already and nothing more is needed. Every step is safe to
repeat, so a retried bundle leaves no duplicates.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from core.bundle import Bundle
from core.indexing.chunker import Chunk, chunk_text
from core.indexing.collection import DENSE, LEXICAL
from core.indexing.embedders import Embedder
from core.indexing.languages import decode_text, language_of
from core.indexing.lexical import sparse_vector
from core.models import IndexingStats
from core.workspace import ApplyPlan, Write

# the pre-bundle bytes of those of `paths` that held an indexable file
ReadBefore = Callable[[list[str]], dict[str, bytes]]
NAMESPACE = uuid.UUID("6f0b7a52-3f0e-4b8e-9a57-2f1f3c0de1a5")
FILES_PER_BATCH = 128
SCROLL_PAGE = 1024


@dataclass(frozen=True)
class IndexTarget:
    """Where one bundle's points go and what they carry besides the chunk."""

    collection: str
    workspace: str
    repo: str
    bundle_id: str
    sequence: int
    host_root: str | None = None  # the client's local path of the workspace (source_path)

    def host_path(self, path: str) -> str | None:
        """Where the client keeps `path`, in the client's own spelling."""
        if not self.host_root:
            return None
        sep = "\\" if "\\" in self.host_root and "/" not in self.host_root else "/"
        return self.host_root.rstrip("/\\") + sep + path.replace("/", sep)


@dataclass
class _Wanted:
    id: str
    path: str
    chunk_hash: str
    payload: dict[str, Any]
    sparse: tuple[list[int], list[float]] = field(default=([], []))


def point_id(workspace: str, path: str, chunk_hash: str, occurrence: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{workspace}\n{path}\n{chunk_hash}\n{occurrence}"))


class QdrantSync:
    """Applies one plan to one collection."""

    def __init__(self, client: Any, embedder: Embedder, target: IndexTarget, before: ReadBefore,
                 max_file_bytes: int, ordering: str | None, scan_paths: bool) -> None:
        from qdrant_client import models

        self.models = models
        self.client = client
        self.embedder = embedder
        self.target = target
        self.before = before
        self.max_file_bytes = max_file_bytes
        self.scan_paths = scan_paths
        self.ordering = models.WriteOrdering(ordering) if ordering else None
        self.stats = IndexingStats()
        self._held_ids: dict[str, list[str]] = {}  # path -> ids of its pre-bundle chunks

    # public -------------------------------------------------------------------
    def run(self, plan: ApplyPlan, bundle: Bundle,
            checkpoint: Callable[[str], None] = lambda point: None) -> IndexingStats:
        """`checkpoint("mid_index")` is called after re-pointing and after each batch of files."""
        started = time.monotonic()
        if plan.copies:  # first: a write may replace a path whose points move elsewhere
            self._repoint({c.source: c.dest for c in plan.copies})
            checkpoint("mid_index")
        for start in range(0, len(plan.writes), FILES_PER_BATCH):
            self._sync_files(plan.writes[start : start + FILES_PER_BATCH], bundle)
            checkpoint("mid_index")
        gone = plan.removals + plan.deletes
        if gone:
            self._delete_ids([p.id for p in self._existing(gone, vectors=False)])
        self.stats.index_ms = (time.monotonic() - started) * 1000
        return self.stats

    # written files ------------------------------------------------------------
    def _sync_files(self, writes: list[Write], bundle: Bundle) -> None:
        wanted: list[_Wanted] = []
        for write in writes:
            staged = bundle.staged[write.member]
            text = decode_text(staged.path.read_bytes()) if staged.size <= self.max_file_bytes else None
            if text is None:
                self.stats.files_skipped += 1
                continue
            wanted.extend(self._chunks(write.path, text, write.sha1))
        held = {str(p.id): p for p in self._retrieve([w.id for w in wanted])}
        missing = [w for w in wanted if w.id not in held]
        moved_lines = [w for w in wanted if w.id in held and _span(held[w.id].payload)
                       != (w.payload["metadata"]["start_line"], w.payload["metadata"]["end_line"])]
        sources = [w.moved_from for w in writes if w.moved_from]
        self._upsert(missing, self._dense_for(missing, sources))
        self._set_payloads(moved_lines)
        keep = {w.id for w in wanted}
        replaced = [w.path for w in writes if w.replaces]
        self._delete_ids([str(p.id) for p in self._existing(replaced, vectors=False)
                          if str(p.id) not in keep])

    def _text(self, data: bytes) -> str | None:
        return decode_text(data) if len(data) <= self.max_file_bytes else None

    def _chunks(self, path: str, text: str, sha1: str) -> Iterator[_Wanted]:
        language = language_of(path)
        for chunk, digest, pid in self._chunk_ids(path, text):
            yield _Wanted(
                id=pid,
                path=path,
                chunk_hash=digest,
                payload=self._payload(path, language, chunk.start_line, chunk.end_line,
                                      chunk.text, f"sha1:{sha1}", digest),
                sparse=sparse_vector(f"{path}\n{chunk.text}"),
            )

    def _chunk_ids(self, path: str, text: str) -> Iterator[tuple[Chunk, str, str]]:
        """Each chunk of `text` at `path` with its text hash and point id."""
        seen: Counter[str] = Counter()
        for chunk in chunk_text(text, language_of(path)):
            digest = hashlib.sha1(chunk.text.encode("utf-8")).hexdigest()
            seen[digest] += 1
            yield chunk, digest, point_id(self.target.workspace, path, digest, seen[digest])

    def _payload(self, path: str, language: str, start: int, end: int, code: str,
                 file_hash: str, chunk_hash: str) -> dict[str, Any]:
        return {
            "workspace": self.target.workspace,
            "bundle_id": self.target.bundle_id,
            "sequence": self.target.sequence,
            "chunk_hash": chunk_hash,
            "metadata": {"path": path, "language": language, "start_line": start,
                         "end_line": end, "code": code, "file_hash": file_hash,
                         "repo": self.target.repo, "host_path": self.target.host_path(path)},
        }

    def _dense_for(self, missing: list[_Wanted], moved_from: list[str]) -> list[list[float]]:
        """Dense vectors for `missing`; chunks of files moved with their content reuse
        the vectors stored for the same chunk at the old path."""
        if not self.embedder.dim or not missing:
            return [[] for _ in missing]
        reuse: dict[str, list[float]] = {}
        for point in self._existing(moved_from, vectors=[DENSE]):
            vector = (point.vector or {}).get(DENSE)
            if vector is not None:
                reuse.setdefault(point.payload["chunk_hash"], list(vector))
        todo = [w for w in missing if w.chunk_hash not in reuse]
        started = time.monotonic()
        fresh = self.embedder.embed([w.payload["metadata"]["code"] for w in todo]) if todo else []
        self.stats.embed_ms += (time.monotonic() - started) * 1000
        self.stats.chunks_embedded += len(todo)
        reuse.update({w.chunk_hash: v for w, v in zip(todo, fresh, strict=True)})
        return [reuse[w.chunk_hash] for w in missing]

    # moves without content ---------------------------------------------------
    def _repoint(self, moves: dict[str, str]) -> None:
        """Re-create each source's points at its destination. A source without points
        was re-pointed already (a retry after a crash) or never indexed: its
        destination is left as it is."""
        sources = self._existing(list(moves), vectors=True)
        moved = sorted({moves[p.payload["metadata"]["path"]] for p in sources})
        dests = {str(p.id) for p in self._existing(moved, vectors=False)}
        seen: Counter[tuple[str, str]] = Counter()
        points = []
        for point in sorted(sources, key=lambda p: (p.payload["metadata"]["path"],
                                                     p.payload["metadata"]["start_line"])):
            meta = dict(point.payload["metadata"])
            dest = moves[meta["path"]]
            digest = point.payload["chunk_hash"]
            seen[(dest, digest)] += 1
            meta["path"] = dest
            meta["host_path"] = self.target.host_path(dest)
            payload = {**point.payload, "metadata": meta, "bundle_id": self.target.bundle_id,
                       "sequence": self.target.sequence}
            new_id = point_id(self.target.workspace, dest, digest, seen[(dest, digest)])
            points.append(self.models.PointStruct(id=new_id, vector=point.vector or {}, payload=payload))
        self._write(points)
        self.stats.points_repointed += len(points)
        keep = {str(p.id) for p in points}
        self._delete_ids([pid for pid in dests if pid not in keep])

    # qdrant calls ------------------------------------------------------------
    def _in_workspace(self) -> Any:
        m = self.models
        return m.FieldCondition(key="workspace", match=m.MatchValue(value=self.target.workspace))

    def _existing(self, paths: list[str], vectors: bool | list[str]) -> list[Any]:
        """The points held for `paths`: those of their pre-bundle chunks, by id."""
        if not paths:
            return []
        found = {str(p.id): p for p in self._retrieve(self._ids_before(paths), vectors)}
        if self.scan_paths:
            m = self.models
            path_filter = m.Filter(must=[self._in_workspace(),
                                         m.FieldCondition(key="metadata.path", match=m.MatchAny(any=paths))])
            found.update((str(p.id), p) for p in self._scroll(path_filter, vectors=vectors))
        return list(found.values())

    def _ids_before(self, paths: list[str]) -> list[str]:
        """Point ids of the chunks of `paths`' pre-bundle bytes, read and chunked once per
        path and bundle (a move source is looked up to re-point it and again to delete)."""
        todo = [p for p in dict.fromkeys(paths) if p not in self._held_ids]
        held = self.before(todo) if todo else {}
        for path in todo:
            text = self._text(held[path]) if path in held else None
            chunks = self._chunk_ids(path, text) if text is not None else iter(())
            self._held_ids[path] = [pid for _, _, pid in chunks]
        return [pid for path in dict.fromkeys(paths) for pid in self._held_ids[path]]

    def _retrieve(self, ids: list[str], vectors: bool | list[str] = False) -> list[Any]:
        """Points by id: a lookup, not a scan, on a server and in embedded mode alike."""
        found: list[Any] = []
        for start in range(0, len(ids), SCROLL_PAGE):
            found.extend(self.client.retrieve(self.target.collection, ids=ids[start : start + SCROLL_PAGE],
                                              with_payload=True, with_vectors=vectors))
        return found

    def _scroll(self, scroll_filter: Any, vectors: bool | list[str]) -> Iterator[Any]:
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.target.collection, scroll_filter=scroll_filter, limit=SCROLL_PAGE,
                offset=offset, with_payload=True, with_vectors=vectors,
            )
            yield from points
            if offset is None:
                return

    def _upsert(self, wanted: list[_Wanted], dense: list[list[float]]) -> None:
        m = self.models
        points = []
        for item, vector in zip(wanted, dense, strict=True):
            vectors: dict[str, Any] = {LEXICAL: m.SparseVector(indices=item.sparse[0], values=item.sparse[1])}
            if vector:
                vectors[DENSE] = vector
            points.append(m.PointStruct(id=item.id, vector=vectors, payload=item.payload))
        self._write(points)

    def _write(self, points: list[Any]) -> None:
        if not points:
            return
        started = time.monotonic()
        for start in range(0, len(points), 256):
            self.client.upsert(self.target.collection, points=points[start : start + 256],
                               wait=True, ordering=self.ordering)
        self.stats.points_upserted += len(points)
        self.stats.write_ms += (time.monotonic() - started) * 1000

    def _set_payloads(self, items: list[_Wanted]) -> None:
        if not items:
            return
        m = self.models
        started = time.monotonic()
        operations = [m.SetPayloadOperation(set_payload=m.SetPayload(payload=i.payload, points=[i.id]))
                      for i in items]
        for start in range(0, len(operations), 256):
            self.client.batch_update_points(self.target.collection, operations[start : start + 256],
                                            wait=True, ordering=self.ordering)
        self.stats.write_ms += (time.monotonic() - started) * 1000

    def _delete_ids(self, ids: list[str]) -> None:
        if not ids:
            return
        started = time.monotonic()
        self.client.delete(self.target.collection,
                           points_selector=self.models.PointIdsList(points=ids),
                           wait=True, ordering=self.ordering)
        self.stats.points_deleted += len(ids)
        self.stats.write_ms += (time.monotonic() - started) * 1000


def _span(payload: dict[str, Any]) -> tuple[int, int]:
    meta = payload.get("metadata", {})
    return meta.get("start_line", 0), meta.get("end_line", 0)
