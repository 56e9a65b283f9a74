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
50,000-file one. Where the engine indexes `metadata.path` (a server, Qdrant
Edge: not qdrant-client's in-process test mode), a filtered scroll is added as
well, so points left by an older chunker are still found. A retry after
`execute` ran part-way may read a path's new bytes or none; by then an earlier
attempt finished this step, so the old points are gone already and nothing
more is needed. Every step is safe to
repeat, so a retried bundle leaves no duplicates.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from core.bundle import Bundle
from core.indexing.chunker import Chunk, chunk_text
from core.indexing.embedders import Embedder
from core.indexing.embedding_process import Embed
from core.indexing.engines import IndexEngine, NewPoint, Sparse, StoredPoint, Where
from core.indexing.languages import decode_text, language_of
from core.indexing.lexical import BM25, sparse_vector
from core.memory import release_freed_memory
from core.models import IndexingStats
from core.workspace import ApplyPlan, Write

# the pre-bundle bytes of those of `paths` that held an indexable file
ReadBefore = Callable[[list[str]], dict[str, bytes]]
NAMESPACE = uuid.UUID("6f0b7a52-3f0e-4b8e-9a57-2f1f3c0de1a5")
FILES_PER_BATCH = 128


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

    @property
    def lexical_text(self) -> str:
        """What the lexical vector is made of: the path, then the chunk."""
        return f"{self.path}\n{self.payload['metadata']['code']}"


@dataclass
class _Batch:
    writes: list[Write]
    wanted: list[_Wanted]
    missing: list[_Wanted]  # not in the engine yet
    moved_lines: list[_Wanted]  # in the engine, at other lines
    reuse: dict[str, list[float]]  # chunk hash -> stored dense vector of a moved file
    todo: list[_Wanted]  # the chunks of `missing` to embed
    lexical: list[Sparse]  # the lexical vectors of `missing`


def point_id(workspace: str, path: str, chunk_hash: str, occurrence: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{workspace}\n{path}\n{chunk_hash}\n{occurrence}"))


class QdrantSync:
    """Applies one plan to one collection."""

    def __init__(self, engine: IndexEngine, embedder: Embedder, target: IndexTarget, before: ReadBefore,
                 max_file_bytes: int, scan_paths: bool, embed: Embed | None = None,
                 lexical: str = BM25) -> None:
        self.engine = engine
        self.lexical = lexical  # the collection's lexical version (`core.indexing.lexical`)
        self.embedder = embedder
        self.embed = embed or embedder.embed  # batches of written files (maybe in a helper process)
        self.target = target
        self.before = before
        self.max_file_bytes = max_file_bytes
        self.scan_paths = scan_paths
        self.stats = IndexingStats()
        self._held_ids: dict[str, list[str]] = {}  # path -> ids of its pre-bundle chunks

    # public -------------------------------------------------------------------
    def run(self, plan: ApplyPlan, bundle: Bundle,
            checkpoint: Callable[[str], None] = lambda point: None) -> IndexingStats:
        """`checkpoint("mid_index")` is called after re-pointing and after each batch of files.

        Batches overlap: while one batch is embedded (on a worker thread, which hands
        large batches to the embedding helper process), the next is chunked and the
        previous written."""
        started = time.monotonic()
        if plan.copies:  # first: a write may replace a path whose points move elsewhere
            self._repoint({c.source: c.dest for c in plan.copies})
            checkpoint("mid_index")
        with ThreadPoolExecutor(1, thread_name_prefix="embed") as embedding:
            waiting: tuple[_Batch, Future[list[list[float]]]] | None = None
            for start in range(0, len(plan.writes), FILES_PER_BATCH):
                batch = self._prepare(plan.writes[start : start + FILES_PER_BATCH], bundle)
                embedded = embedding.submit(self._embed, [w.payload["metadata"]["code"] for w in batch.todo])
                if waiting is not None:
                    self._finish(*waiting)
                    checkpoint("mid_index")
                waiting = batch, embedded
            if waiting is not None:
                self._finish(*waiting)
                checkpoint("mid_index")
        gone = plan.removals + plan.deletes
        if gone:
            self._delete_ids([p.id for p in self._existing(gone, vectors=False)])
        self.stats.index_ms = (time.monotonic() - started) * 1000
        return self.stats

    # written files ------------------------------------------------------------
    def _prepare(self, writes: list[Write], bundle: Bundle) -> _Batch:
        """Chunk a batch of written files and find what the engine lacks of it: the
        chunks to write, and which of them can reuse a moved file's stored vector."""
        wanted: list[_Wanted] = []
        for write in writes:
            staged = bundle.staged[write.member]
            text = decode_text(staged.path.read_bytes()) if staged.size <= self.max_file_bytes else None
            if text is None:
                self.stats.files_skipped += 1
                continue
            wanted.extend(self._chunks(write.path, text, write.sha1))
        held = {p.id: p for p in self._retrieve([w.id for w in wanted])}
        missing = [w for w in wanted if w.id not in held]
        moved_lines = [w for w in wanted if w.id in held and _span(held[w.id].payload)
                       != (w.payload["metadata"]["start_line"], w.payload["metadata"]["end_line"])]
        reuse = self._stored_dense([w.moved_from for w in writes if w.moved_from]) if missing else {}
        todo = [w for w in missing if w.chunk_hash not in reuse] if self.embedder.dim else []
        # only what is written needs one
        lexical = [sparse_vector(w.lexical_text, self.lexical) for w in missing]
        return _Batch(writes, wanted, missing, moved_lines, reuse, todo, lexical)

    def _finish(self, batch: _Batch, embedded: Future[list[list[float]]]) -> None:
        """Write a prepared batch: new points first, then line moves, then stale points."""
        fresh = embedded.result()
        dense: list[list[float] | None] = [None for _ in batch.missing]
        if self.embedder.dim:
            vectors = {**batch.reuse, **{w.chunk_hash: v for w, v in zip(batch.todo, fresh, strict=True)}}
            dense = [vectors[w.chunk_hash] for w in batch.missing]
        self._upsert(batch.missing, dense, batch.lexical)
        self._set_payloads(batch.moved_lines)
        keep = {w.id for w in batch.wanted}
        replaced = [w.path for w in batch.writes if w.replaces]
        self._delete_ids([p.id for p in self._existing(replaced, vectors=False) if p.id not in keep])
        release_freed_memory()

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

    def _stored_dense(self, moved_from: list[str]) -> dict[str, list[float]]:
        """The dense vectors stored for the chunks of files moved with their content, by
        chunk hash: their chunks at the new path need no embedding."""
        reuse: dict[str, list[float]] = {}
        if self.embedder.dim:
            for point in self._existing(moved_from, vectors=True):
                if point.dense is not None:
                    reuse.setdefault(point.payload["chunk_hash"], point.dense)
        return reuse

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        started = time.monotonic()
        vectors = self.embed(texts)
        self.stats.embed_ms += (time.monotonic() - started) * 1000
        self.stats.chunks_embedded += len(texts)
        return vectors

    # moves without content ---------------------------------------------------
    def _repoint(self, moves: dict[str, str]) -> None:
        """Re-create each source's points at its destination. A source without points
        was re-pointed already (a retry after a crash) or never indexed: its
        destination is left as it is."""
        sources = self._existing(list(moves), vectors=True)
        moved = sorted({moves[p.payload["metadata"]["path"]] for p in sources})
        dests = {p.id for p in self._existing(moved, vectors=False)}
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
            points.append(NewPoint(id=new_id, payload=payload, sparse=point.sparse or ([], []),
                                   dense=point.dense))
        self._write(points)
        self.stats.points_repointed += len(points)
        keep = {p.id for p in points}
        self._delete_ids([pid for pid in dests if pid not in keep])

    # engine calls ------------------------------------------------------------
    def _existing(self, paths: list[str], vectors: bool) -> list[StoredPoint]:
        """The points held for `paths`: those of their pre-bundle chunks, by id."""
        if not paths:
            return []
        found = {p.id: p for p in self._retrieve(self._ids_before(paths), vectors)}
        if self.scan_paths:
            where: Where = {"workspace": self.target.workspace, "metadata.path": list(dict.fromkeys(paths))}
            found.update((p.id, p) for p in self.engine.scroll(self.target.collection, where, vectors))
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

    def _retrieve(self, ids: list[str], vectors: bool = False) -> list[StoredPoint]:
        """Points by id: a lookup, not a scan, on every engine."""
        return self.engine.retrieve(self.target.collection, ids, vectors) if ids else []

    def _upsert(self, wanted: list[_Wanted], dense: list[list[float] | None], sparse: list[Sparse]) -> None:
        self._write([NewPoint(id=item.id, payload=item.payload, sparse=lexical, dense=vector)
                     for item, vector, lexical in zip(wanted, dense, sparse, strict=True)])

    def _write(self, points: list[NewPoint]) -> None:
        if not points:
            return
        started = time.monotonic()
        self.engine.upsert(self.target.collection, points)
        self.stats.points_upserted += len(points)
        self.stats.write_ms += (time.monotonic() - started) * 1000

    def _set_payloads(self, items: list[_Wanted]) -> None:
        if not items:
            return
        started = time.monotonic()
        self.engine.set_payloads(self.target.collection, {i.id: i.payload for i in items})
        self.stats.write_ms += (time.monotonic() - started) * 1000

    def _delete_ids(self, ids: list[str]) -> None:
        if not ids:
            return
        started = time.monotonic()
        self.engine.delete(self.target.collection, ids)
        self.stats.points_deleted += len(ids)
        self.stats.write_ms += (time.monotonic() - started) * 1000


def _span(payload: dict[str, Any]) -> tuple[int, int]:
    meta = payload.get("metadata", {})
    return meta.get("start_line", 0), meta.get("end_line", 0)
