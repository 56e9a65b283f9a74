"""Each engine's answers on real code, against a brute-force reference computed here.

The corpus is code nobody here wrote (the first Python files of the installed
packages), chunked, embedded and turned into lexical vectors as the service
does, split over two workspaces. For queries taken from that code:

  * dense: the engine's top hits must be the top hits by cosine similarity,
    computed with numpy over every stored vector of the workspace;
  * lexical: the top hits by Qdrant's IDF-weighted dot product, with the IDF
    `ln((N - df + 0.5) / (df + 0.5) + 1)` over the whole collection;
  * both within the workspace filter only.

A rank may hold another point only where the reference scores tie (within
float tolerance). Qdrant Edge is checked before and after it builds its HNSW
index (`optimise_now`; a low indexing threshold makes it build one for this
corpus); after, at least 90 % of the top-10 ranks must be the reference's (HNSW
is approximate by design).
"""

from __future__ import annotations

import math
import sysconfig
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.config import Settings
from core.indexing.chunker import chunk_text
from core.indexing.embedders import WordLlamaEmbedder
from core.indexing.engines import HybridQuery, IndexEngine, Layout, NewPoint, ScoredPoint, open_engine
from core.indexing.engines.edge import EdgeEngine
from core.indexing.languages import decode_text, language_of
from core.indexing.lexical import query_vector, sparse_vector
from core.indexing.search import ranked, search_points
from core.indexing.sync import point_id

FILES = 250
TOP = 10
COLLECTION = "reference"
TOLERANCE = 1e-4


class Corpus:
    def __init__(self) -> None:
        site = Path(sysconfig.get_paths()["purelib"])
        self.points: list[NewPoint] = []
        texts: list[str] = []
        for index, file in enumerate(sorted(site.rglob("*.py"))[:FILES]):
            text = decode_text(file.read_bytes())
            if text is None:
                continue
            path = str(file.relative_to(site))
            for n, chunk in enumerate(chunk_text(text, language_of(path))):
                workspace = "ws-a" if index % 2 == 0 else "ws-b"
                self.points.append(NewPoint(
                    id=point_id(workspace, path, str(n), 1), sparse=sparse_vector(f"{path}\n{chunk.text}"),
                    payload={"workspace": workspace, "metadata": {"path": path}}))
                texts.append(chunk.text)
        self.embedder = WordLlamaEmbedder()
        for point, vector in zip(self.points, self.embedder.embed(texts), strict=True):
            point.dense = vector
        self.queries = [line.strip()[:60] for line in texts[::max(1, len(texts) // 25)] if line.strip()][:25]
        self.dense = np.asarray([p.dense for p in self.points], dtype=np.float64)
        df: Counter[int] = Counter(i for p in self.points for i in set(p.sparse[0]))
        total = len(self.points)
        self.idf = {t: math.log((total - n + 0.5) / (n + 0.5) + 1) for t, n in df.items()}

    def in_workspace(self, workspace: str) -> list[int]:
        return [i for i, p in enumerate(self.points) if p.payload["workspace"] == workspace]

    def dense_scores(self, query: list[float], members: list[int]) -> dict[str, float]:
        scores = self.dense[members] @ np.asarray(query, dtype=np.float64)
        return {self.points[i].id: float(s) for i, s in zip(members, scores, strict=True)}

    def lexical_scores(self, query: tuple[list[int], list[float]], members: list[int]) -> dict[str, float]:
        weights = {t: v * self.idf.get(t, 0.0) for t, v in zip(*query, strict=True)}
        scores = {}
        for i in members:
            indices, values = self.points[i].sparse
            score = sum(weights.get(t, 0.0) * v for t, v in zip(indices, values, strict=True))
            if score > 0:
                scores[self.points[i].id] = score
        return scores


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus()


@pytest.fixture(params=["edge", "memory"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, corpus: Corpus) -> Iterator[IndexEngine]:
    made: IndexEngine
    if request.param == "memory":
        made = open_engine(Settings(qdrant_url=":memory:"))
    else:  # segments of more than 1 MB of vectors get HNSW, so this corpus's does
        made = EdgeEngine(tmp_path / "qdrant", hnsw_min_points=10**9, indexing_threshold_kb=1000)
    made.ensure_collection(COLLECTION, Layout(corpus.embedder.name, corpus.embedder.dim))
    made.upsert(COLLECTION, corpus.points)
    yield made
    made.close()


def ranked_ids(engine: IndexEngine, query: HybridQuery) -> list[str]:
    return [hit.id for hit in engine.query(COLLECTION, query)]


def agreement(found: list[str], reference: dict[str, float]) -> tuple[int, int]:
    """(ranks that hold a point scoring like the reference's at that rank, ranks compared)."""
    best = sorted(reference.values(), reverse=True)[:TOP]
    same = sum(1 for rank, pid in enumerate(found[: len(best)])
               if abs(reference.get(pid, -math.inf) - best[rank]) <= TOLERANCE * max(1.0, abs(best[rank])))
    assert len(found) == len(best), (len(found), len(best))
    return same, len(best)


def check(engine: IndexEngine, corpus: Corpus, least_share: float) -> None:
    members = corpus.in_workspace("ws-a")
    where = {"workspace": "ws-a"}
    same = compared = 0
    for text in corpus.queries:
        dense = corpus.embedder.embed([text])[0]
        sparse = query_vector(text)
        for query, reference in (
            (HybridQuery(([], []), dense, where, TOP, TOP), corpus.dense_scores(dense, members)),
            (HybridQuery(sparse, None, where, TOP, TOP), corpus.lexical_scores(sparse, members)),
        ):
            found = ranked_ids(engine, query)
            assert set(found) <= set(reference), "a hit from outside the workspace, or scoring nothing"
            hits, ranks = agreement(found, reference)
            if least_share == 1.0:
                assert hits == ranks, (text, found, sorted(reference.items(), key=lambda kv: -kv[1])[:TOP])
            same, compared = same + hits, compared + ranks
    assert compared > 0 and same / compared >= least_share, (same, compared)


def test_dense_and_lexical_answers_equal_a_brute_force_reference(engine: IndexEngine, corpus: Corpus) -> None:
    check(engine, corpus, least_share=1.0)


def test_after_building_hnsw_edge_still_finds_the_reference_hits(engine: IndexEngine, corpus: Corpus) -> None:
    if not isinstance(engine, EdgeEngine):
        pytest.skip("qdrant-client's in-process mode builds no index")
    engine.optimise_now(COLLECTION)
    points, indexed = engine.indexed_vectors(COLLECTION)
    assert indexed == 2 * points  # every dense vector is in the HNSW graph now, every sparse one indexed
    check(engine, corpus, least_share=0.9)
    hybrid = HybridQuery(query_vector("parse header"), corpus.embedder.embed(["parse header"])[0],
                         {"workspace": "ws-b"}, TOP, 4 * TOP)
    assert {h.payload["workspace"] for h in engine.query(COLLECTION, hybrid)} == {"ws-b"}


def test_a_ranked_search_is_the_reciprocal_rank_fusion_of_the_reference_halves(
        engine: IndexEngine, corpus: Corpus) -> None:
    """`search_points` (what the search endpoint and the CLI answer): RRF (k = 2) of the
    reference's dense and lexical rankings, equal scores by id, spread over files; never a
    point the exclude names, though the workspace holds some (commits with code's vectors)."""
    members = corpus.in_workspace("ws-a")
    paths = {p.id: p.payload["metadata"]["path"] for p in corpus.points}
    commits = [NewPoint(id=point_id("ws-a", "commit", str(n), 1), sparse=p.sparse, dense=p.dense,
                        payload={"workspace": "ws-a", "kind": "commit"})
               for n, p in enumerate(corpus.points[i] for i in members[:40:4])]
    engine.upsert(COLLECTION, commits)
    same = compared = 0
    for text in corpus.queries:
        request = HybridQuery(query_vector(text), corpus.embedder.embed([text])[0], {"workspace": "ws-a"},
                              TOP, 4 * TOP, exclude={"kind": "commit"})
        found = [p.id for p in search_points(engine, COLLECTION, request)]
        assert not {c.id for c in commits} & set(found)
        fused: dict[str, float] = {}
        for reference in (corpus.dense_scores(request.dense or [], members),
                          corpus.lexical_scores(request.sparse, members)):
            best = sorted(reference, key=lambda p: (-reference[p], p))[: request.prefetch]
            for rank, pid in enumerate(best):
                fused[pid] = fused.get(pid, 0.0) + 1 / (2 + rank)
        expected = [p.id for p in ranked([ScoredPoint(pid, score, {"metadata": {"path": paths[pid]}})
                                          for pid, score in fused.items()], TOP)]
        same += sum(a == b for a, b in zip(found, expected, strict=True))
        compared += len(expected)
    assert same / compared >= 0.9, (same, compared)  # a rank may differ where float sums tie
