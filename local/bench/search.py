"""The search endpoint on real code: retrieval quality, latency, freshness.

Why: a search must find what a user asks for, in milliseconds, and see an upload
as soon as it answered. One service subprocess on `make run` settings (filesystem
storage, Qdrant Edge in WORK_DIR/qdrant, the default embedder wordllama) takes
every upload and every search, all through HTTP (`POST /api/v1/search`); once it
has stopped (an embedded folder has one owner) the same folder is opened in this
process for the floors. Three parts:

  1. Retrieval quality on code nobody here wrote: each package of PACKAGES (pure
     Python, well documented, from this virtualenv's site-packages) uploaded as a
     workspace of its own collection. Queries are first lines of docstrings of
     its functions, classes and methods (a seeded sample, QUERIES per package);
     the answer expected is the file that holds the docstring.
       A. as written: the file among the top 5 hits (target >= 90 %), and MRR@10
          (1 / rank of the first hit in the file, over limit 10);
       B. harder: a second copy of each package, uploaded as another workspace,
          with the sampled docstrings removed from their files (only code and
          names can match): the same two figures.
     Beside the endpoint, the same queries in this process on the same
     collections with the same prefetch: the hybrid (the endpoint's hits must be
     the engine's), lexical only (no dense vector) and dense only (no lexical
     one), so that what each half of the hybrid brings is visible.
  2. Latency: a workspace of the first CORPUS_FILES Python files of
     site-packages (uploaded in a few bundles); p50 and p95 of the endpoint over
     LATENCY_QUERIES distinct queries (limit 10), through a keep-alive connection
     of http.client (the same searches through requests are printed beside: that
     library's own work is about 1 ms a search more), against the engine's own
     hybrid query on the same collection (limit 10, the same prefetch, with
     payloads, query vectors computed beforehand): what the service adds to
     what any caller of the engine pays (target: the endpoint's p50 <= 1.5x the
     engine's). The endpoint's own engine calls and ranking are printed too.
  3. Freshness: a one-file delta with a new identifier uploaded to that
     workspace; the time from the upload's 200 to the first search that returns
     the new content, and how many searches that took (it is indexed in the same
     request: one).
"""

from __future__ import annotations

import ast
import http.client
import json
import random
import re
import statistics
import sysconfig
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests

from core.config import Settings
from core.indexing.commits import COMMIT_KIND
from core.indexing.engines import IndexEngine
from core.indexing.indexer import Indexer
from core.indexing.search import hybrid_query, search_points
from core.qdrant import QdrantHandle
from local.bench import common
from local.bench.common import Figure, ratio_figure
from tests.support.bundles import BundleBuilder

NAME = "search"
# pure-Python packages of this virtualenv with >= 30 modules and many docstrings
PACKAGES = ("werkzeug", "urllib3", "rich", "docker")
QUERIES = common.sized(60, 15)  # per package
SEED = 20260501
TOP = 5
MRR_LIMIT = 10
QUALITY_TARGET = 0.90
CORPUS_FILES = common.sized(5000, 400)
CORPUS_BUNDLES = 4
LATENCY_QUERIES = common.sized(50, 20)
LATENCY_ROUNDS = common.sized(3, 1)
LATENCY_TARGET = 1.5
WORKSPACE_ROOT = "/bench/search"
CORPUS_WORKSPACE = f"{WORKSPACE_ROOT}/corpus"
SEARCH_TIMEOUT = 60.0
MIN_WORDS = 4
# first lines that say nothing of their own function: pointers to another one
GENERIC = re.compile(r"^(see |same as |alias |shortcut |deprecated|backwards?[- ]compat|"
                     r"override|overridden|internal|todo|return self|like )", re.IGNORECASE)
SITE = Path(sysconfig.get_paths()["purelib"])


# corpus and queries -------------------------------------------------------------
def package_files(package: str) -> dict[str, bytes]:
    """path (as under site-packages) -> bytes of every .py file of `package`."""
    return {f.relative_to(SITE).as_posix(): f.read_bytes() for f in sorted((SITE / package).rglob("*.py"))}


def corpus_files(limit: int) -> dict[str, bytes]:
    """The first `limit` .py files of site-packages by path (as tests/support/corpus.py)."""
    written_here = "__editable__"  # pip's finder for this project, not outside code
    files = sorted(f for f in SITE.rglob("*.py") if not f.name.startswith(written_here))[:limit]
    return {f.relative_to(SITE).as_posix(): f.read_bytes() for f in files}


@dataclass(frozen=True)
class Query:
    text: str  # the docstring's first line
    path: str  # the file that holds it
    span: tuple[int, int, int, int]  # the docstring literal: line, col, end line, end col (ast's)


def docstring_queries(files: dict[str, bytes], count: int, seed: int) -> list[Query]:
    """A seeded sample of first docstring lines of functions, classes and methods. Left
    out: lines of fewer than MIN_WORDS words, GENERIC ones, and any whose text occurs
    more than once in the whole package (then the expected file is ambiguous, and
    removing the docstring would not remove the text)."""
    found: list[Query] = []
    for path, data in files.items():
        try:
            tree = ast.parse(data)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            doc = ast.get_docstring(node)
            line = doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""
            if len(line.split()) < MIN_WORDS or GENERIC.match(line) or not line[0].isalpha():
                continue
            literal = node.body[0].value  # type: ignore[attr-defined]  # a docstring's Constant
            assert literal.end_lineno is not None and literal.end_col_offset is not None
            found.append(Query(line, path, (literal.lineno, literal.col_offset, literal.end_lineno,
                                            literal.end_col_offset)))
    text = b"\n".join(files.values()).decode("utf-8", "replace")
    unique = sorted((q for q in found if text.count(q.text) == 1), key=lambda q: (q.path, q.span))
    return sorted(random.Random(seed).sample(unique, min(count, len(unique))), key=lambda q: q.text)


def without_docstrings(files: dict[str, bytes], queries: list[Query]) -> dict[str, bytes]:
    """`files` with the docstring of each query replaced by `...` (the body stays valid)."""
    out = dict(files)
    for path in {q.path for q in queries}:
        starts = [0]  # the offset of each line
        for text in files[path].splitlines(keepends=True):
            starts.append(starts[-1] + len(text))
        data = files[path]
        spans = sorted((q.span for q in queries if q.path == path), reverse=True)
        for line, col, end_line, end_col in spans:  # ast's offsets are in UTF-8 bytes
            data = data[: starts[line - 1] + col] + b"..." + data[starts[end_line - 1] + end_col :]
        ast.parse(data)
        out[path] = data
        for query in queries:
            assert query.path != path or query.text not in data.decode("utf-8", "replace"), query
    return out


def bundle(files: dict[str, bytes], collection: str) -> bytes:
    builder = BundleBuilder(collection_name=collection)
    for path, data in files.items():
        builder.created(path, data)
    return builder.build()


def latency_queries(files: dict[str, bytes], count: int) -> list[str]:
    """Distinct queries as a user types them, spread over the corpus: names and phrases of
    its own lines (definitions, docstring openings, comments), at most 80 characters."""
    lines = dict.fromkeys(
        line.strip(" #\"'")[:80] for data in files.values()
        for line in data.decode("utf-8", "replace").splitlines()
        if line.strip().startswith(("def ", "class ", '"""', "#")) and len(line.strip()) > 12)
    distinct = sorted(lines)
    return random.Random(SEED).sample(distinct, count)


# measuring ----------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """A quality workspace: where its points are (the search answer's names)."""

    package: str
    variant: str  # "A" (as written) or "B" (docstrings removed)
    workspace_path: str
    collection: str = ""
    workspace_key: str = ""


Ranked = list[tuple[str, int]]  # (path, start line) of each hit, best first


@dataclass
class Scores:
    top: list[bool]  # the expected file among the first TOP hits of a limit-TOP search
    reciprocal: list[float]  # 1 / rank of the first hit in the file (limit MRR_LIMIT), or 0
    ranked: list[Ranked]  # every search's hits, for comparing two ways of searching

    @property
    def top_share(self) -> float:
        return sum(self.top) / len(self.top)

    @property
    def mrr(self) -> float:
        return statistics.fmean(self.reciprocal)

    def value(self) -> str:
        return f"{self.top_share:.1%} / {self.mrr:.3f}"


def score(queries: list[Query], search: Callable[[str, int], Ranked]) -> Scores:
    scores = Scores([], [], [])
    for query in queries:
        top, ranked = search(query.text, TOP), search(query.text, MRR_LIMIT)
        scores.top.append(query.path in {path for path, _ in top})
        rank = next((i for i, (path, _) in enumerate(ranked, 1) if path == query.path), None)
        scores.reciprocal.append(1 / rank if rank else 0.0)
        scores.ranked += [top, ranked]
    return scores


def merged(parts: Iterable[Scores]) -> Scores:
    total = Scores([], [], [])
    for part in parts:
        total.top += part.top
        total.reciprocal += part.reciprocal
        total.ranked += part.ranked
    return total


class Client:
    """The search endpoint over keep-alive connections: `search` through requests (a
    Session), `lean` through http.client, whose own work per answer is ~1 ms less (what the
    latency figures time: the service, not the client library)."""

    def __init__(self, url: str) -> None:
        self.url = url + "/api/v1/search"
        self.session = requests.Session()
        address = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(address.hostname or "", address.port,
                                                     timeout=SEARCH_TIMEOUT)

    def lean(self, query: str, workspace_path: str, limit: int) -> dict[str, Any]:
        body = json.dumps({"query": query, "workspace_path": workspace_path, "limit": limit})
        self.connection.request("POST", "/api/v1/search", body, {"Content-Type": "application/json"})
        answer = self.connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"search answered {answer.status}: {data[:500]!r}")
        return dict(json.loads(data))

    def search(self, query: str, workspace_path: str, limit: int) -> dict[str, Any]:
        answer = self.session.post(self.url, timeout=SEARCH_TIMEOUT,
                                   json={"query": query, "workspace_path": workspace_path, "limit": limit})
        if answer.status_code != 200:
            raise RuntimeError(f"search answered {answer.status_code}: {answer.text[:500]}")
        return dict(answer.json())

    def served(self) -> tuple[float, float]:
        """Seconds the service has spent so far in the search handler, and in the search
        code within it (the sums of its histograms at /metrics)."""
        text = self.session.get(self.url.removesuffix("/api/v1/search") + "/metrics", timeout=30).text
        handler = re.search(r'^delta_http_request_seconds_sum\{route="/api/v1/search"\} (\S+)', text, re.M)
        search = re.search(r'^delta_search_seconds_sum\{kind="code"\} (\S+)', text, re.M)
        return (float(handler.group(1)) if handler else 0.0), (float(search.group(1)) if search else 0.0)

    def ranked(self, workspace_path: str) -> Callable[[str, int], Ranked]:
        def search(query: str, limit: int) -> Ranked:
            return [(h["path"], h["start_line"]) for h in self.search(query, workspace_path, limit)["hits"]]
        return search


def engine_search(engine: IndexEngine, indexer: Indexer, scope: Scope,
                  half: str) -> Callable[[str, int], Ranked]:
    """What the endpoint asks the engine (`core.indexing.search`: the same query, filter,
    prefetch and ranking) in this process, or one half of it: "lexical" without the
    dense vector, "dense" without the lexical one."""
    def search(query: str, limit: int) -> Ranked:
        request = hybrid_query(indexer.embedder, query, {"workspace": scope.workspace_key}, limit,
                               exclude={"kind": COMMIT_KIND})
        if half == "lexical":
            request = replace(request, dense=None)
        elif half == "dense":
            request = replace(request, sparse=([], []))
        points = search_points(engine, scope.collection, request)
        return [(p.payload["metadata"]["path"], p.payload["metadata"]["start_line"]) for p in points]
    return search


def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# the run ------------------------------------------------------------------------
@dataclass
class Measured:
    scopes: list[Scope]
    http: dict[tuple[str, str], Scores]  # (package, variant) -> scores through the endpoint
    corpus_key: str
    corpus_collection: str
    corpus_points: int
    http_ms: list[float]  # through http.client
    requests_ms: list[float]  # the same searches through requests
    handler_ms: float  # mean, as the service's own histograms saw it: the search handler
    searcher_ms: float  # and the search code in it (`core.search.Searcher`)
    fresh_ms: float
    fresh_searches: int
    fresh_upload_ms: float
    corpus_upload_s: float


Copies = dict[str, dict[str, dict[str, bytes]]]  # package -> variant -> its files


def through_service(root: Path, queries: dict[str, list[Query]], copies: Copies, corpus: dict[str, bytes],
                    asked: list[str]) -> Measured:
    """Everything through HTTP, on one service process on `make run` settings."""
    scopes: list[Scope] = []
    http: dict[tuple[str, str], Scores] = {}
    with common.service(root, "svc", common.INDEXED, timeout=120) as svc:
        client = Client(svc.url)
        for package in PACKAGES:
            for variant, files in copies[package].items():
                suffix = "" if variant == "A" else "-nodoc"
                path = f"{WORKSPACE_ROOT}/{package}{suffix}"
                answer = common.upload(svc, bundle(files, f"q-{package}{suffix}"), path)
                assert answer["indexing"]["points_upserted"] > 0, answer
                http[(package, variant)] = score(queries[package], client.ranked(path))
                first = client.search("warm up", path, 1)
                scopes.append(Scope(package, variant, path, first["collection_name"], first["workspace_key"]))
        # part 2: a large workspace, in a few bundles
        names = sorted(corpus)
        size = -(-len(names) // CORPUS_BUNDLES)
        started = time.perf_counter()
        points = 0
        for start in range(0, len(names), size):
            part = {name: corpus[name] for name in names[start : start + size]}
            points += common.upload(svc, bundle(part, common.COLLECTION), CORPUS_WORKSPACE)[
                "indexing"]["points_upserted"]
        upload_s = time.perf_counter() - started
        for warm in ("warm up", "def main", "parse the header"):
            first = client.search(warm, CORPUS_WORKSPACE, 10)
        http_ms, requests_ms = [], []
        before = client.served()
        for _ in range(LATENCY_ROUNDS):
            for query in asked:  # each query through both clients, alternately
                started = time.perf_counter()
                client.lean(query, CORPUS_WORKSPACE, 10)
                http_ms.append(ms_since(started))
                started = time.perf_counter()
                client.search(query, CORPUS_WORKSPACE, 10)
                requests_ms.append(ms_since(started))
        served = [(after - start) * 1000 / (2 * len(http_ms))
                  for start, after in zip(before, client.served(), strict=True)]
        fresh_ms, searches, upload_ms = freshness(svc, client)
    return Measured(scopes, http, first["workspace_key"], first["collection_name"], points, http_ms,
                    requests_ms, served[0], served[1], fresh_ms, searches, upload_ms, upload_s)


def freshness(svc: Any, client: Client) -> tuple[float, int, float]:
    """Part 3: (ms from the upload's 200 to the first search returning the new file,
    searches it took, ms of the upload itself)."""
    marker = f"quokka_ledger_{uuid.uuid4().hex[:12]}"
    path = f"bench_fresh/{marker}.py"
    source = (f'def {marker}(entries):\n    """Sum the {marker} entries."""\n'
              f"    return sum(e.amount for e in entries)\n")
    builder = BundleBuilder(collection_name=common.COLLECTION).created(path, source.encode())
    upload_s, answer = common.timed_upload(svc, builder.build(), CORPUS_WORKSPACE)
    assert answer["indexing"]["points_upserted"] == 1, answer
    uploaded = time.perf_counter()
    for searches in range(1, 101):
        hits = client.search(marker, CORPUS_WORKSPACE, 5)["hits"]
        if any(h["path"] == path and marker in h["snippet"] for h in hits):
            return ms_since(uploaded), searches, upload_s * 1000
        time.sleep(0.01)
    raise RuntimeError(f"the new file was not found after 100 searches: {marker}")


def in_process(folder: Path, measured: Measured, queries: dict[str, list[Query]],
               asked: list[str]) -> tuple[dict[tuple[str, str, str], Scores], list[float], list[float]]:
    """Once the service has stopped: the quality queries on its folder, hybrid and each
    half alone; on the large workspace, milliseconds of the engine's own hybrid query
    (limit 10, prefetch 40, payloads: what a caller of the engine would ask) and of the
    engine calls the endpoint makes (`search_points`: candidates, payloads, ranking)."""
    settings = Settings(qdrant_url=str(folder), collection_name=common.COLLECTION)
    handle = QdrantHandle(settings)
    indexer = Indexer(settings, handle)
    engine = handle.engine()
    found: dict[tuple[str, str, str], Scores] = {}
    for scope in measured.scopes:
        for half in ("hybrid", "lexical", "dense"):
            found[(scope.package, scope.variant, half)] = score(
                queries[scope.package], engine_search(engine, indexer, scope, half))
    requests_ = [hybrid_query(indexer.embedder, q, {"workspace": measured.corpus_key}, 10,
                              exclude={"kind": COMMIT_KIND}) for q in asked]
    for request in requests_[:3]:
        engine.query(measured.corpus_collection, request)
        search_points(engine, measured.corpus_collection, request)
    engine_ms, calls_ms = [], []
    for _ in range(LATENCY_ROUNDS):
        for request in requests_:
            started = time.perf_counter()
            engine.query(measured.corpus_collection, request)
            engine_ms.append(ms_since(started))
            started = time.perf_counter()
            search_points(engine, measured.corpus_collection, request)
            calls_ms.append(ms_since(started))
    handle.close()
    indexer.close()
    return found, engine_ms, calls_ms


def quality_figures(measured: Measured, found: dict[tuple[str, str, str], Scores],
                    queries: dict[str, list[Query]]) -> list[Figure]:
    """Per set: the file in the top TOP (share of queries) / MRR@MRR_LIMIT, through the
    endpoint, then in this process: the hybrid, lexical alone, dense alone."""
    figures = []
    count = sum(len(q) for q in queries.values())
    asked = f"{count} queries ({', '.join(f'{p} {len(queries[p])}' for p in PACKAGES)})"
    for variant, title in (("A", "A as written"), ("B", "B docstrings removed")):
        http = merged(measured.http[(p, variant)] for p in PACKAGES)
        halves = {half: merged(found[(p, variant, half)] for p in PACKAGES)
                  for half in ("hybrid", "lexical", "dense")}
        per_package = "; ".join(f"{p} {measured.http[(p, variant)].value()}" for p in PACKAGES)
        name = f"   {title}: top{TOP}/MRR@{MRR_LIMIT},"
        met = http.top_share >= QUALITY_TARGET if variant == "A" else None
        figures.append(Figure(NAME, f"{name} hybrid via HTTP", http.value(),
                              f">= {QUALITY_TARGET:.0%}" if variant == "A" else "—", met,
                              f"{asked}; per package: {per_package}"))
        same = sum(a == b for a, b in zip(http.ranked, halves["hybrid"].ranked, strict=True))
        figures.append(Figure(NAME, f"{name} hybrid in-process", halves["hybrid"].value(),
                              "= HTTP", same == len(http.ranked),
                              f"the same hits in the same order for {same} of {len(http.ranked)} searches"))
        for half in ("lexical", "dense"):
            figures.append(Figure(NAME, f"{name} {half} only", halves[half].value(), "—", None,
                                  "in-process; " + "; ".join(f"{p} {found[(p, variant, half)].value()}"
                                                             for p in PACKAGES)))
    return figures


def main() -> list[Figure]:
    queries: dict[str, list[Query]] = {}
    copies: Copies = {}
    for package in PACKAGES:
        files = package_files(package)
        queries[package] = docstring_queries(files, QUERIES, SEED)
        copies[package] = {"A": files, "B": without_docstrings(files, queries[package])}
    corpus = corpus_files(CORPUS_FILES)
    asked = latency_queries(corpus, LATENCY_QUERIES)
    with common.temp_root(NAME) as root:
        measured = through_service(root, queries, copies, corpus, asked)
        found, engine_ms, calls_ms = in_process(root / "svc" / "qdrant", measured, queries, asked)
    figures = quality_figures(measured, found, queries)
    http_p50, engine_p50 = statistics.median(measured.http_ms), statistics.median(engine_ms)
    samples = f"{len(measured.http_ms)} searches ({len(asked)} distinct queries x {LATENCY_ROUNDS}), limit 10"
    figures += [
        Figure(NAME, f"   search p50 via HTTP ({len(corpus):,} files, {measured.corpus_points:,} pts)",
               f"{http_p50:.1f} ms", "—", None,
               f"p95 {percentile(measured.http_ms, 0.95):.1f} ms; {samples}, through http.client "
               f"(through requests: p50 {statistics.median(measured.requests_ms):.1f} ms); mean per "
               f"search {statistics.fmean(measured.http_ms + measured.requests_ms):.1f} ms, of it in "
               f"the handler {measured.handler_ms:.1f} ms, in the search code {measured.searcher_ms:.1f} "
               f"ms (the service's histograms); the files uploaded in "
               f"{CORPUS_BUNDLES} bundles in {measured.corpus_upload_s:.1f} s"),
        Figure(NAME, "   search p95 via HTTP", f"{percentile(measured.http_ms, 0.95):.1f} ms", "—", None),
        ratio_figure(NAME, "   search p50 via HTTP / the engine's own query", http_p50 / engine_p50,
                     LATENCY_TARGET,
                     f"{http_p50:.2f} ms / {engine_p50:.2f} ms (engine p95 "
                     f"{percentile(engine_ms, 0.95):.2f} ms; same collection and prefetch, query "
                     f"vectors computed beforehand; the endpoint's own engine calls and ranking "
                     f"{statistics.median(calls_ms):.2f} ms p50)"),
        Figure(NAME, "   one-file delta: its upload's 200 -> found by search",
               f"{measured.fresh_ms:.1f} ms", "1 search", measured.fresh_searches == 1,
               f"{measured.fresh_searches} search(es); the upload itself {measured.fresh_upload_ms:.0f} ms"),
    ]
    common.report(figures)
    return figures


if __name__ == "__main__":
    common.run(main)
