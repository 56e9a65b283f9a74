"""How fused search candidates are ranked (`core.indexing.search.ranked`): a stable order
for equal scores, and hits spread over files; and how an exclude filter is read on a
payload (`core.indexing.engines.base.matches`)."""

from __future__ import annotations

import random

from core.indexing.engines import Prefix, ScoredPoint
from core.indexing.engines.base import matches
from core.indexing.search import ranked


def point(pid: str, score: float, path: str) -> ScoredPoint:
    return ScoredPoint(pid, score, {"metadata": {"path": path}})


def test_equal_scores_rank_the_same_whatever_order_the_engine_gave() -> None:
    points = [point(f"id-{i}", 1 / (2 + i // 2), f"f{i}.py") for i in range(12)]
    first = [p.id for p in ranked(points, 5, per_file=0)]
    for seed in range(20):
        shuffled = points[:]
        random.Random(seed).shuffle(shuffled)
        assert [p.id for p in ranked(shuffled, 5, per_file=0)] == first
    assert first == ["id-0", "id-1", "id-2", "id-3", "id-4"]


def test_a_file_gets_a_second_place_only_after_every_file_had_its_first() -> None:
    points = [point("a1", 0.9, "a.py"), point("a2", 0.8, "a.py"), point("a3", 0.7, "a.py"),
              point("b1", 0.5, "b.py"), point("c1", 0.4, "c.py"), point("b2", 0.3, "b.py")]
    assert [p.id for p in ranked(points, 10)] == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert [p.id for p in ranked(points, 10, per_file=2)] == ["a1", "a2", "b1", "c1", "b2", "a3"]
    assert [p.id for p in ranked(points, 3, per_file=0)] == ["a1", "a2", "a3"]
    assert len(ranked(points, 4)) == 4


def test_matches_reads_dotted_keys_lists_and_prefixes_as_the_engines_do() -> None:
    payload = {"kind": "commit", "metadata": {"path": "src/app.py", "tags": ["a", "b"]}}
    assert matches(payload, {"kind": "commit"}) and not matches(payload, {"kind": "code"})
    assert matches(payload, {"metadata.path": Prefix("src/")})
    assert not matches(payload, {"metadata.path": "src"})
    assert matches(payload, {"metadata.tags": "b"}) and matches(payload, {"kind": ["x", "commit"]})
    assert not matches(payload, {"missing.key": "x"})
    assert matches(payload, {"kind": "x", "metadata.tags": "a"})  # any key
