"""Both engines delete a workspace's points by filter and drop a collection, idempotently,
through the one Indexer method deletion uses (`core.deletion`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.indexing.commits import COMMIT_WORKSPACE
from core.indexing.engines import IndexEngine, Layout, NewPoint
from core.indexing.indexer import Indexer
from core.qdrant import QdrantHandle

LAYOUT = Layout("none", 0)


def point(n: int, payload: dict[str, str]) -> NewPoint:
    return NewPoint(id=f"00000000-0000-4000-8000-{n:012d}", payload=payload, sparse=([n + 1], [1.0]))


@pytest.fixture(params=["edge", "memory"])
def indexer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Indexer]:
    url = str(tmp_path / "qdrant") if request.param == "edge" else ":memory:"
    settings = Settings(qdrant_url=url, embedding_model="none")
    handle = QdrantHandle(settings)
    yield Indexer(settings, handle)
    handle.engine().close()


def test_a_workspace_s_code_and_commit_points_go_and_no_other(indexer: Indexer) -> None:
    engine: IndexEngine = indexer.qdrant.engine()
    for name in ("c1", "c2"):
        engine.ensure_collection(name, LAYOUT)
    engine.upsert("c1", [point(1, {"workspace": "a-1"}), point(2, {"workspace": "a-1"}),
                         point(3, {"kind": "commit", COMMIT_WORKSPACE: "a-1"}),
                         point(4, {"workspace": "b-2"}),
                         point(5, {"kind": "commit", COMMIT_WORKSPACE: "b-2"})])
    engine.upsert("c2", [point(6, {"workspace": "a-1"})])
    fenced: list[str] = []

    def fence(wrapped: IndexEngine) -> IndexEngine:
        fenced.append("write")
        return wrapped

    assert indexer.delete_workspace_points("c1", "a-1", fence) == 3
    assert fenced == ["write", "write"]  # each write goes through the deletion's fence
    assert engine.count("c1", None) == 2 and engine.count("c1", {"workspace": "b-2"}) == 1
    assert engine.count("c2", None) == 1  # another collection keeps its points
    assert indexer.delete_workspace_points("c1", "a-1") == 0  # again: nothing left
    assert indexer.delete_workspace_points("no-such", "a-1") == 0
    assert indexer.drop_collection("c1") is True
    assert not engine.collection_exists("c1") and engine.collection_exists("c2")
    assert indexer.drop_collection("c1") is False  # idempotent
    indexer.prepare("c1")  # forgotten: an upload there creates it anew
    assert engine.collection_exists("c1") and engine.count("c1", None) == 0
