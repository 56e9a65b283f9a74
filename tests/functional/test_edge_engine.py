"""Qdrant Edge as the embedded engine: what persists, what it refuses, what a crash leaves,
and HNSW built in the background while every point stays searchable."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from core.errors import IndexUnavailable
from core.indexing import lexical
from core.indexing.engines import CollectionIncompatible, HybridQuery, Layout, NewPoint
from core.indexing.engines.edge import SCRATCH, EdgeEngine
from tests.support.service import ROOT

LAYOUT = Layout("test-embedder", 8)


def points(count: int, workspace: str = "ws", seed: int = 0) -> list[NewPoint]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, LAYOUT.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [NewPoint(id=str(uuid.uuid4()), payload={"workspace": workspace, "metadata": {"path": f"f{i}.py"}},
                     sparse=([i % 50 + 1], [1.0]), dense=vectors[i].tolist()) for i in range(count)]


def test_points_and_the_layout_persist_across_a_reopen(tmp_path: Path) -> None:
    engine = EdgeEngine(tmp_path, hnsw_min_points=10**9)
    engine.ensure_collection("c", LAYOUT)
    written = points(300)
    engine.upsert("c", written)
    engine.delete("c", [written[0].id])
    engine.set_payloads("c", {written[1].id: {"extra": 1}})
    engine.close()
    again = EdgeEngine(tmp_path, hnsw_min_points=10**9)
    again.ensure_collection("c", LAYOUT)
    assert again.count("c", {"workspace": "ws"}) == 299
    [kept] = again.retrieve("c", [written[1].id], vectors=True)
    assert kept.payload["extra"] == 1 and kept.dense == pytest.approx(written[1].dense)
    assert kept.sparse == written[1].sparse
    again.close()


@pytest.mark.parametrize(("other", "why"), [
    (Layout("another-embedder", 8), "built with embedder 'test-embedder', the service runs 'another-"),
    (Layout("test-embedder", 16), "dense vectors of size 8, the embedder makes 16"),
])
def test_a_collection_built_with_other_vectors_drifts_and_takes_no_dense_vectors(
        tmp_path: Path, other: Layout, why: str) -> None:
    """Another embedder is no refusal: the collection reports drift (a reason to
    reindex), and the running service writes and queries it without dense vectors."""
    engine = EdgeEngine(tmp_path, hnsw_min_points=10**9)
    engine.ensure_collection("c", LAYOUT)
    engine.ensure_collection("c", other)
    built = engine.built_with("c")
    assert LAYOUT.drift(built) == [] and LAYOUT.dense_usable(built)
    assert not other.dense_usable(built)
    assert any(why in reason for reason in other.drift(built)), other.drift(built)
    engine.upsert("c", [NewPoint(id=str(uuid.uuid4()), payload={"workspace": "ws"}, sparse=([3], [1.0]))])
    assert engine.count("c", {"workspace": "ws"}) == 1
    engine.close()


def test_collections_are_served_through_an_alias_switched_atomically(tmp_path: Path) -> None:
    engine = EdgeEngine(tmp_path, hnsw_min_points=10**9)
    engine.ensure_collection("t--c", LAYOUT)
    serving = engine.resolve("t--c")
    assert serving is not None and serving.startswith("t--c~") and engine.logical_collections() == ["t--c"]
    engine.upsert("t--c", points(3))
    rebuilt = engine.create_physical("t--c", LAYOUT)
    engine.upsert(rebuilt, points(5, seed=1))
    assert engine.count("t--c", None) == 3  # a collection being built is not served
    engine.switch_alias("t--c", rebuilt)
    assert engine.resolve("t--c") == rebuilt and engine.count("t--c", None) == 5
    with pytest.raises(ValueError):
        engine.drop_physical(rebuilt)  # served: never dropped from under its alias
    engine.drop_physical(serving)
    engine.close()
    again = EdgeEngine(tmp_path, hnsw_min_points=10**9)  # the switch is on disk
    assert again.resolve("t--c") == rebuilt and again.count("t--c", None) == 5
    assert sorted(p.name for p in (tmp_path / "collections").iterdir()) == [rebuilt]
    again.drop_collection("t--c")
    again.drop_collection("t--c")  # idempotent
    assert again.resolve("t--c") is None and list((tmp_path / "collections").iterdir()) == []
    again.close()


@pytest.mark.parametrize("crash_between", [False, True])
def test_a_collection_made_before_aliases_moves_behind_one_keeping_every_point(
        tmp_path: Path, crash_between: bool) -> None:
    """A pre-alias folder (named after its served name) is renamed behind an alias when the
    folder is opened; a crash after the alias was written and before the rename is
    finished by the next open."""
    engine = EdgeEngine(tmp_path, hnsw_min_points=10**9)
    physical = engine.create_physical("old", LAYOUT)
    engine.upsert(physical, points(40))
    engine.close()
    legacy = tmp_path / "collections" / "old"
    (tmp_path / "collections" / physical).rename(legacy)  # as a release before aliases left it
    if crash_between:
        (tmp_path / "aliases.json").write_text('{"format": 1, "aliases": {"old": "old~0123456789ab"}}')
    again = EdgeEngine(tmp_path, hnsw_min_points=10**9)
    moved = again.resolve("old")
    assert moved is not None and moved != "old" and not legacy.exists()
    assert moved == "old~0123456789ab" if crash_between else moved.startswith("old~")
    assert again.count("old", None) == 40 and again.logical_collections() == ["old"]
    again.close()


def test_a_collection_keeps_the_lexical_version_it_was_made_with(tmp_path: Path) -> None:
    """A collection made before BM25 keeps its counts; one of a version this service does not
    make is refused."""
    engine = EdgeEngine(tmp_path, hnsw_min_points=10**9)
    engine.ensure_collection("old", Layout("test-embedder", 8, lexical=lexical.TF))
    engine.ensure_collection("old", LAYOUT)  # opened by today's service: accepted, as it is
    assert engine.lexical_version("old") == lexical.TF
    engine.ensure_collection("new", LAYOUT)
    assert engine.lexical_version("new") == lexical.BM25
    with pytest.raises(CollectionIncompatible):  # made by a later service, say
        engine.ensure_collection("later", Layout("test-embedder", 8, lexical="crc32-bm25-9"))
    with pytest.raises(CollectionIncompatible) as refused:
        engine.ensure_collection("later", LAYOUT)
    assert "lexical vectors of version 'crc32-bm25-9'" in str(refused.value)
    engine.close()


def test_a_creation_a_crash_interrupted_leaves_no_collection(tmp_path: Path) -> None:
    half_made = tmp_path / "collections" / f"{SCRATCH}0123"
    (half_made / "shard").mkdir(parents=True)
    engine = EdgeEngine(tmp_path, hnsw_min_points=10**9)
    assert not half_made.exists() and not engine.collection_exists("0123")
    engine.close()


def test_a_folder_another_process_holds_is_refused_saying_so(tmp_path: Path) -> None:
    EdgeEngine(tmp_path, hnsw_min_points=10**9).ensure_collection("c", LAYOUT)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path\n"
         "from core.indexing.engines.edge import EdgeEngine\n"
         f"e = EdgeEngine(Path({str(tmp_path)!r}), hnsw_min_points=10**9); e.count('c', None)\n"
         "print('holding', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        engine = EdgeEngine(tmp_path, hnsw_min_points=10**9)
        with pytest.raises(IndexUnavailable) as refused:
            engine.count("c", None)
        assert "open in another process" in str(refused.value)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_hnsw_is_built_in_the_background_and_fresh_points_stay_searchable(tmp_path: Path) -> None:
    engine = EdgeEngine(tmp_path, hnsw_min_points=5_000, indexing_threshold_kb=100, idle_secs=0.5)
    engine.ensure_collection("c", LAYOUT)
    engine.upsert("c", points(6_000, seed=1))  # reaches hnsw_min_points: an optimisation starts
    fresh = points(50, workspace="fresh", seed=2)
    engine.upsert("c", fresh)
    query = HybridQuery(([], []), fresh[7].dense, {"workspace": "fresh"}, 1, 10)
    deadline = time.monotonic() + 120
    while True:  # while it optimises, and after: the fresh point is always found
        assert [hit.id for hit in engine.query("c", query)] == [fresh[7].id]
        total, indexed = engine.indexed_vectors("c")
        if indexed >= total + 6_000:  # the first 6,000 points' dense vectors are in a graph now
            break
        assert time.monotonic() < deadline, (total, indexed)
        time.sleep(0.05)
    assert total == 6_050
    engine.close()


def test_an_exclude_leaves_its_points_out_whether_the_workspace_holds_any_or_not(tmp_path: Path) -> None:
    """The engine drops an exclude that no point of the query's workspace matches (it costs
    Edge a check per point); it still holds when there are, and when one comes in between."""
    engine = EdgeEngine(tmp_path, hnsw_min_points=10**9)
    engine.ensure_collection("c", LAYOUT)
    code = points(200)
    commits = points(20, seed=3)
    for point in commits:
        point.payload["kind"] = "commit"
    others = points(20, workspace="other", seed=3)  # commits of another workspace, same vectors
    for point in others:
        point.payload["kind"] = "commit"
    engine.upsert("c", code + others)
    query = HybridQuery(([], []), commits[0].dense, {"workspace": "ws"}, 10, 40, exclude={"kind": "commit"})
    assert engine._needed("c", query.where, query.exclude) is None
    before = [hit.id for hit in engine.query("c", query)]
    assert len(before) == 10 and not {p.id for p in others} & set(before)
    assert engine.count("c", {"workspace": "ws"}, exclude={"kind": "commit"}) == 200
    engine.upsert("c", commits)
    assert engine._needed("c", query.where, query.exclude) == {"kind": "commit"}
    assert [hit.id for hit in engine.query("c", query)] == before
    assert engine.count("c", {"workspace": "ws"}, exclude={"kind": "commit"}) == 200
    assert commits[0].id in [hit.id for hit in engine.query("c", HybridQuery(
        ([], []), commits[0].dense, {"workspace": "ws"}, 10, 40))]
    engine._needed = lambda *args: None  # type: ignore[method-assign]  # as if counted just before
    assert not {p.id for p in commits} & {hit.id for hit in engine.query("c", query)}
    engine.close()
