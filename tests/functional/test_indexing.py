"""Indexing does exactly the work a delta needs (pipeline + a real engine: Qdrant Edge
in a folder, and qdrant-client's in-process mode, which speaks a server's API)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.errors import IndexUnavailable, error_response
from core.indexing import lexical
from core.indexing.embedders import Embedder, WordLlamaEmbedder
from core.indexing.engines import IndexEngine, Layout, NewPoint, open_engine
from core.indexing.indexer import Indexer
from core.indexing.search import hybrid_search
from core.keys import workspace_key
from core.models import UploadRequest, UploadResult
from core.pipeline import Pipeline
from core.qdrant import QdrantHandle
from core.storage.filesystem import FilesystemStore
from tests.support.bundles import BundleBuilder

WORKSPACE = "/work/indexing"
WS = workspace_key("", WORKSPACE, None)
COLLECTION = "test-code"

TWO_FUNCTIONS = b'''def parse_header(line):
    """Split one HTTP header line into its name and value."""
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()


def render_table(rows):
    """Render rows of cells as an aligned text table."""
    widths = [max(len(c) for c in col) for col in zip(*rows)]
    return "\\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)
'''


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.texts = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.texts += len(texts)
        return self.inner.embed(texts)


class FlakyEngine:
    """A real engine whose upserts fail while `down` is true."""

    def __init__(self, inner: IndexEngine) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upsert(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise ConnectionError("qdrant went away")
        return self.inner.upsert(*args, **kwargs)


class Harness:
    def __init__(self, root: Path, embedder: Embedder, engine: str) -> None:
        url = ":memory:" if engine == "memory" else str(root / "qdrant")
        settings = Settings(work_dir=str(root / "storage"), qdrant_url=url, collection_name=COLLECTION)
        self.engine = FlakyEngine(open_engine(settings))
        self.handle = QdrantHandle(settings)
        self.handle.use(self.engine)  # type: ignore[arg-type]
        self.embedder = CountingEmbedder(embedder)
        self.indexer = Indexer(settings, self.handle)
        self.indexer._embedder = self.embedder
        self.pipeline = Pipeline(settings, FilesystemStore(root / "storage"), self.indexer)

    def upload(self, builder: BundleBuilder) -> UploadResult:
        request = UploadRequest(workspace_path=WORKSPACE, collection_name=COLLECTION)
        return self.pipeline.upload(request, io.BytesIO(builder.build()))

    def points(self, path: str | None = None) -> dict[str, dict[str, Any]]:
        return {p.id: p.payload for p in self.engine.inner.scroll(COLLECTION, None, vectors=False)
                if path is None or p.payload["metadata"]["path"] == path}


@pytest.fixture(scope="module")
def wordllama() -> Embedder:
    return WordLlamaEmbedder()


@pytest.fixture(params=["edge", "memory"])
def harness(request: pytest.FixtureRequest, tmp_path: Path, wordllama: Embedder) -> Iterator[Harness]:
    made = Harness(tmp_path, wordllama, request.param)
    yield made
    made.handle.close()


def test_payload_has_the_layout_search_tools_read(harness: Harness) -> None:
    result = harness.upload(BundleBuilder().created("src/http_utils.py", TWO_FUNCTIONS))
    assert result.indexing is not None and result.indexing.points_upserted == 2
    payloads = list(harness.points().values())
    meta = payloads[0]["metadata"]
    assert set(meta) >= {"path", "language", "start_line", "end_line", "code", "file_hash", "repo"}
    assert meta["path"] == "src/http_utils.py" and meta["language"] == "python"
    assert {p["workspace"] for p in payloads} == {WS}
    assert {p["sequence"] for p in payloads} == {1}
    spans = sorted((p["metadata"]["start_line"], p["metadata"]["end_line"]) for p in payloads)
    assert spans[0][0] == 1 and "def render_table" in sorted(
        payloads, key=lambda p: p["metadata"]["start_line"])[1]["metadata"]["code"]


def test_update_embeds_only_the_changed_chunk_and_keeps_the_others_ids(harness: Harness) -> None:
    harness.upload(BundleBuilder().created("u.py", TWO_FUNCTIONS))
    before = harness.points("u.py")
    unchanged = next(i for i, p in before.items() if "render_table" in p["metadata"]["code"])
    changed = TWO_FUNCTIONS.replace(b"return name.strip().lower()", b"return name.strip()")
    harness.embedder.texts = 0
    result = harness.upload(BundleBuilder().updated("u.py", changed, previous=TWO_FUNCTIONS))
    assert harness.embedder.texts == 1
    assert result.indexing is not None
    assert (result.indexing.chunks_embedded, result.indexing.points_deleted) == (1, 1)
    after = harness.points("u.py")
    assert unchanged in after and len(after) == 2
    assert all("strip().lower()" not in p["metadata"]["code"] for p in after.values())


def test_identical_content_again_writes_nothing_new(harness: Harness) -> None:
    harness.upload(BundleBuilder().created("a.py", TWO_FUNCTIONS))
    before = harness.points()
    harness.embedder.texts = 0
    again = harness.upload(BundleBuilder().created("a.py", TWO_FUNCTIONS))
    assert again.indexing is not None
    assert (again.indexing.points_upserted, again.indexing.chunks_embedded) == (0, 0)
    assert harness.embedder.texts == 0
    assert set(harness.points()) == set(before)


def test_a_move_makes_no_embedder_call_and_a_delete_removes_the_points(harness: Harness) -> None:
    harness.upload(BundleBuilder().created("old/mod.py", TWO_FUNCTIONS).created("keep.py", b"x = 1\n"))
    harness.embedder.texts = 0
    moved = harness.upload(BundleBuilder().moved("old/mod.py", "new/mod.py"))
    assert harness.embedder.texts == 0
    assert moved.indexing is not None and moved.indexing.points_repointed == 2
    assert harness.points("old/mod.py") == {}
    assert len(harness.points("new/mod.py")) == 2
    with_content = harness.upload(BundleBuilder().moved("new/mod.py", "lib/mod.py", TWO_FUNCTIONS))
    assert harness.embedder.texts == 0 and with_content.indexing is not None
    assert len(harness.points("lib/mod.py")) == 2 and harness.points("new/mod.py") == {}
    harness.upload(BundleBuilder().deleted("lib/mod.py"))
    assert harness.points("lib/mod.py") == {}
    assert len(harness.points("keep.py")) == 1


def test_binary_and_oversized_files_are_skipped_and_counted(harness: Harness) -> None:
    big = b"x = 1\n" * 200_000
    result = harness.upload(BundleBuilder().created("blob.bin", b"\x00\x01" * 50)
                            .created("huge.py", big).created("ok.py", b"y = 2\n"))
    assert result.indexing is not None and result.indexing.files_skipped == 2
    assert {p["metadata"]["path"] for p in harness.points().values()} == {"ok.py"}


def test_qdrant_down_answers_503_and_the_retry_commits_the_same_sequence(harness: Harness) -> None:
    harness.upload(BundleBuilder().created("a.py", b"a = 1\n"))
    builder = BundleBuilder().created("b.py", TWO_FUNCTIONS)
    harness.engine.down = True
    with pytest.raises(IndexUnavailable) as down:
        harness.upload(builder)
    status, body, headers = error_response(down.value)
    assert status == 503 and body["error"]["code"] == "INDEX_UNAVAILABLE"
    assert int(headers["Retry-After"]) > 0
    assert not (harness.pipeline.store.root / f"workspaces/{WS}/tree/b.py").exists()  # type: ignore[attr-defined]
    harness.engine.down = False
    retried = harness.upload(builder)
    assert retried.sequence_number == 2 and not retried.duplicate
    assert len(harness.points("b.py")) == 2
    assert len(harness.points()) == 3


def test_an_edit_a_move_and_a_delete_find_the_old_points_by_id_without_a_scan(harness: Harness) -> None:
    """The old points are retrieved by their ids; a filtered scroll is added only where
    the engine indexes paths (not the in-process mode, which checks every point)."""
    harness.upload(BundleBuilder().created("a.py", TWO_FUNCTIONS).created("b.py", b"b = 1\n")
                   .created("c.py", b"c = 1\n"))
    scrolls: list[Any] = []
    scroll = harness.engine.inner.scroll
    harness.engine.scroll = lambda *a, **kw: scrolls.append(a) or scroll(*a, **kw)  # type: ignore[method-assign]
    changed = TWO_FUNCTIONS.replace(b"return name.strip().lower()", b"return name")
    edit = harness.upload(BundleBuilder().updated("a.py", changed, previous=TWO_FUNCTIONS))
    move = harness.upload(BundleBuilder().moved("b.py", "lib/b.py", content_hash_of=b"b = 1\n"))
    delete = harness.upload(BundleBuilder().deleted("c.py"))
    if harness.engine.kind == "memory":
        assert scrolls == []
    else:
        assert scrolls and all("metadata.path" in where for _, where, _ in scrolls)
    assert edit.indexing is not None and edit.indexing.points_deleted == 1
    assert move.indexing is not None and move.indexing.points_repointed == 1
    assert delete.indexing is not None and delete.indexing.points_deleted == 1
    assert {p["metadata"]["path"] for p in harness.points().values()} == {"a.py", "lib/b.py"}
    assert len(harness.points("a.py")) == 2


def test_where_the_engine_indexes_paths_points_no_chunk_explains_are_removed_too(harness: Harness) -> None:
    """Where paths are indexed (a server, Qdrant Edge) a path's points are also found by
    filter, so points an older chunker cut differently do not outlive their file."""
    harness.upload(BundleBuilder().created("a.py", TWO_FUNCTIONS))
    stray = "00000000-0000-4000-8000-000000000001"
    payload = {**next(iter(harness.points("a.py").values()))}
    harness.engine.inner.upsert(COLLECTION, [NewPoint(id=stray, payload=payload, sparse=([1], [1.0]))])
    harness.upload(BundleBuilder().deleted("a.py"))
    expected = {stray} if harness.engine.kind == "memory" else set()  # in-process: found by id only
    assert set(harness.points("a.py")) == expected


def test_a_collection_made_before_bm25_is_written_and_searched_with_counts(harness: Harness) -> None:
    """Opened by this service, a collection of the previous lexical version keeps it: the
    points a delta adds carry counts like the rest, and a search queries it with counts."""
    harness.engine.inner.ensure_collection(COLLECTION, Layout(harness.embedder.name, harness.embedder.dim,
                                                              lexical=lexical.TF))
    harness.upload(BundleBuilder(collection_name=COLLECTION).created("headers.py", TWO_FUNCTIONS))
    stored = list(harness.engine.inner.scroll(COLLECTION, None, vectors=True))
    assert stored and all(v == int(v) for p in stored for v in (p.sparse or ([], []))[1])
    assert harness.indexer.served(harness.engine, COLLECTION).lexical == lexical.TF
    found = hybrid_search(harness.engine, harness.embedder, COLLECTION, WS, "parse_header", 1)
    assert [h.path for h in found] == ["headers.py"]


def test_a_new_collection_weighs_its_lexical_vectors_as_bm25(harness: Harness) -> None:
    harness.upload(BundleBuilder(collection_name=COLLECTION).created("headers.py", TWO_FUNCTIONS))
    stored = list(harness.engine.inner.scroll(COLLECTION, None, vectors=True))
    assert harness.engine.inner.lexical_version(COLLECTION) == lexical.BM25
    assert any(v != int(v) for p in stored for v in (p.sparse or ([], []))[1])
