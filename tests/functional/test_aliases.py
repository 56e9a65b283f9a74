"""Serving through aliases on both engines: a Qdrant server's aliases (qdrant-client's
in-process mode implements them as the server does) and Qdrant Edge's alias file."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from core.indexing.engines import IndexEngine, Layout, NewPoint
from core.indexing.engines.edge import EdgeEngine
from core.indexing.engines.server import Serialized, ServerEngine

LAYOUT = Layout("test-embedder", 4)


def points(count: int, tag: str) -> list[NewPoint]:
    return [NewPoint(id=str(uuid.uuid4()), payload={"workspace": "ws", "tag": tag}, sparse=([n + 1], [1.0]),
                     dense=[1.0, 0.0, 0.0, float(n)]) for n in range(count)]


@pytest.fixture(params=["server", "edge"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexEngine]:
    made: IndexEngine
    if request.param == "server":
        made = ServerEngine(Serialized(QdrantClient(location=":memory:")), kind="memory")
    else:
        made = EdgeEngine(tmp_path, hnsw_min_points=10**9)
    yield made
    made.close()


def test_a_switch_moves_reads_and_writes_of_the_served_name_at_once(engine: IndexEngine) -> None:
    engine.ensure_collection("t--code", LAYOUT)
    serving = engine.resolve("t--code")
    assert serving is not None and serving != "t--code" and engine.logical_collections() == ["t--code"]
    engine.upsert("t--code", points(3, "old"))
    rebuilt = engine.create_physical("t--code", LAYOUT)
    engine.upsert(rebuilt, points(5, "new"))
    assert engine.count("t--code", None) == 3 and engine.built_with(rebuilt)["aliased"]
    engine.switch_alias("t--code", rebuilt)
    engine.switch_alias("t--code", rebuilt)  # again: nothing changes
    assert engine.resolve("t--code") == rebuilt and engine.count("t--code", None) == 5
    engine.upsert("t--code", points(1, "after"))  # a write through the name lands in the new one
    assert engine.count(rebuilt, None) == 6 and engine.count(serving, None) == 3
    with pytest.raises(ValueError):
        engine.drop_physical(rebuilt)
    engine.drop_physical(serving)
    assert engine.resolve(serving) is None and engine.logical_collections() == ["t--code"]
    engine.drop_collection("t--code")
    engine.drop_collection("t--code")
    assert engine.resolve("t--code") is None and engine.logical_collections() == []


def test_what_built_a_collection_is_recorded_and_compared(engine: IndexEngine) -> None:
    engine.ensure_collection("c", LAYOUT)
    built = engine.built_with("c")
    assert built["embedder"] == "test-embedder" and built["dense"] == 4 and built["chunker"] == LAYOUT.chunker
    assert LAYOUT.drift(built) == []
    later = Layout("test-embedder", 4, chunker="defs-2/lines-80-10")
    assert later.drift(built) == [f"chunked by {LAYOUT.chunker!r}, the service chunks by "
                                  "'defs-2/lines-80-10'"]
    assert later.dense_usable(built)  # the same vectors: only the chunks would differ
    other = Layout("bigger-embedder", 8)
    assert not other.dense_usable(built) and len(other.drift(built)) == 1


def test_a_server_collection_made_before_aliases_is_served_until_a_switch_replaces_it() -> None:
    client = QdrantClient(location=":memory:")
    engine = ServerEngine(Serialized(client), kind="memory")
    engine.ensure_collection("legacy~0123456789ab", LAYOUT)  # a physical name is made as it is
    engine._create("legacy", LAYOUT)  # as a release before aliases made it
    engine.upsert("legacy", points(2, "legacy"))
    assert engine.resolve("legacy") == "legacy" and not engine.built_with("legacy")["aliased"]
    assert any("without an alias" in reason for reason in LAYOUT.drift(engine.built_with("legacy")))
    assert engine.logical_collections() == ["legacy"]
    engine.switch_alias("legacy", "legacy~0123456789ab")
    assert engine.resolve("legacy") == "legacy~0123456789ab" and engine.count("legacy", None) == 0
    assert engine.logical_collections() == ["legacy"]
    engine.close()


def test_an_upload_that_makes_the_name_anew_during_a_pre_alias_switch_is_taken_over() -> None:
    """Between deleting a server's pre-alias collection and creating the alias, an upload may
    create the name anew (a fresh physical collection behind an alias); the switch then moves
    the alias over to the rebuilt collection in one step and drops the one the upload made."""
    engine = ServerEngine(Serialized(QdrantClient(location=":memory:")), kind="memory")
    engine._create("legacy", LAYOUT)
    rebuilt = engine.create_physical("legacy", LAYOUT)
    deleting = engine.client.delete_collection
    made: list[str] = []

    def delete_then_an_upload_comes(name: str) -> object:
        answer = deleting(name)
        if name == "legacy" and not made:
            engine.ensure_collection("legacy", LAYOUT)  # what an upload's prepare does
            made.append(str(engine.resolve("legacy")))
        return answer

    engine.client.delete_collection = delete_then_an_upload_comes  # type: ignore[method-assign]
    engine.switch_alias("legacy", rebuilt)
    assert made and made[0] != rebuilt
    assert engine.resolve("legacy") == rebuilt and engine.resolve(made[0]) is None
    engine.close()
