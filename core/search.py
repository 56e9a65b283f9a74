"""Searching what was uploaded: one workspace, or a whole collection, of the caller's tenant.

    query            the text to look for (required)
    workspace_path   the workspace as uploaded; with logical_repo_id that identity's,
                     without it the one the path's latest upload went to (as status)
    collection_name  a whole collection of the tenant; with workspace_path, that
                     workspace's points in this collection
    limit            hits wanted, 1-100 (default 10)
    path_prefix      only paths that start with it ("src/" is a folder, "src/app" also
                     matches "src/application.py"); for commits, a touched file's path
    path_glob        only paths a gitignore-style pattern matches ("*.py", "src/**/test_*.py");
                     for commits, a touched file's path
    language         only chunks of this language (as the indexer names it: "python", ...)
    kind             "code" (default) or "commits"
    per_file         code hits of one file before every other matching file had as many
                     (default 1: each file's best chunk first, then each one's second...);
                     0: plain score order. No hit is dropped, only placed later.

Retrieval is the indexer's hybrid query: dense and lexical candidates fused by
reciprocal rank in the engine, then ranked (`core.indexing.search`: equal scores in
a stable order, hits spread over files as `per_file` says, so hits are in rank order,
not always in score order). Workspace, language and prefix are filters the engine
applies before ranking; a glob is checked on each candidate here, the engine
narrowed to the glob's literal leading folders first, and more candidates are asked
for while too few match (up to MAX_CANDIDATES).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

import pathspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import metrics
from core.config import Settings
from core.errors import InvalidRequest, NotFound
from core.indexing.commits import COMMIT_KIND, COMMIT_WORKSPACE
from core.indexing.engines import IndexEngine, Prefix, ScoredPoint, Where
from core.indexing.indexer import Indexer
from core.indexing.search import PER_FILE, PREFETCH_FACTOR, hybrid_query, ranked, search_points
from core.models import invalid_fields
from core.names import MAX_COLLECTION, stored_collection
from core.storage import ObjectStore
from core.views import find_workspace

MAX_QUERY = 2000
MAX_LIMIT = 100
MAX_CANDIDATES = 1000
GLOB_FACTOR = 8
SNIPPET_LINES = 40
SNIPPET_CHARS = 2000
GLOB_SPECIALS = "*?[!"


class SearchRequest(BaseModel):
    """A search as the endpoint takes it (query parameters or a JSON body, same names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: str = Field(min_length=1, max_length=MAX_QUERY)
    workspace_path: str | None = Field(None, min_length=1, max_length=4096)
    logical_repo_id: str | None = Field(None, min_length=1, max_length=512)
    collection_name: str | None = Field(None, min_length=1, max_length=MAX_COLLECTION)
    limit: int = Field(10, ge=1, le=MAX_LIMIT)
    path_prefix: str | None = Field(None, min_length=1, max_length=4096)
    path_glob: str | None = Field(None, min_length=1, max_length=1024)
    language: str | None = Field(None, min_length=1, max_length=64)
    kind: Literal["code", "commits"] = "code"
    per_file: int = Field(PER_FILE, ge=0, le=MAX_LIMIT)


def parse_search(fields: Mapping[str, Any]) -> SearchRequest:
    """`SearchRequest` of query parameters or a JSON object; an empty string is absent."""
    present = {name: value for name, value in fields.items() if value not in ("", None)}
    try:
        return SearchRequest.model_validate(present)
    except ValidationError as exc:
        raise InvalidRequest(f"invalid search parameter(s): {invalid_fields(exc)[:200]} (query is "
                             f"required; limit 1-{MAX_LIMIT}; per_file 0-{MAX_LIMIT}; kind code or "
                             "commits)") from None


class Searcher:
    """Answers searches from the index, scoped to the caller's tenant."""

    def __init__(self, settings: Settings, store: ObjectStore, indexer: Indexer | None) -> None:
        self.settings = settings
        self.store = store
        self.indexer = indexer

    def search(self, tenant: str, request: SearchRequest) -> dict[str, Any]:
        started = time.monotonic()
        if self.indexer is None:
            raise NotFound("indexing is off on this deployment (INDEXING_ENABLED=false): "
                           "nothing can be searched", code="SEARCH_UNAVAILABLE")
        collection, workspace = self._scope(tenant, request)
        indexer = self.indexer
        hits = indexer.call(lambda engine: self._hits(engine, indexer, collection, workspace, request))
        metrics.SEARCH_SECONDS.labels(request.kind).observe(time.monotonic() - started)
        return {"query": request.query, "kind": request.kind, "collection_name": collection,
                "workspace_key": workspace, "hits": hits}

    def _scope(self, tenant: str, request: SearchRequest) -> tuple[str, str | None]:
        """The stored collection and, for a workspace, its key."""
        named = stored_collection(tenant, request.collection_name) if request.collection_name else None
        if request.workspace_path is None:
            if named is None:
                raise InvalidRequest("give workspace_path or collection_name")
            if request.logical_repo_id:
                raise InvalidRequest("logical_repo_id names a workspace: give workspace_path too")
            return named, None
        ws, head = find_workspace(self.store, self.settings, tenant, request.workspace_path,
                                  request.logical_repo_id)
        if head is None:
            raise NotFound("no upload reached this workspace yet", code="WORKSPACE_NOT_FOUND")
        return named or head.collection_name, ws

    def _hits(self, engine: IndexEngine, indexer: Indexer, collection: str, workspace: str | None,
              request: SearchRequest) -> list[dict[str, Any]]:
        # the physical collection serving now: a switch after this leaves it readable
        # until every request that resolved it is long done (`core.reindex`)
        served = indexer.find(engine, collection)
        if served is None:
            if workspace is None:
                raise NotFound("no such collection", code="COLLECTION_NOT_FOUND")
            return []  # the workspace was uploaded with indexing off: nothing indexed yet
        collection, lexical = served.physical, served.lexical
        commits = request.kind == "commits"
        where: Where = {COMMIT_WORKSPACE if commits else "workspace": workspace} if workspace else {}
        exclude: Where | None = None
        if commits:
            if request.language:
                raise InvalidRequest("language filters code, not commits")
            where["kind"] = COMMIT_KIND
        else:
            if workspace is None:  # a workspace's filter leaves commits out already (COMMIT_WORKSPACE)
                exclude = {"kind": COMMIT_KIND}
            if request.language:
                where["metadata.language"] = request.language
        glob = _glob(request.path_glob) if request.path_glob else None
        prefix = _narrowest(request.path_prefix, _literal_folders(request.path_glob))
        if prefix is False:
            return []  # prefix and glob cannot both hold for any path
        if prefix:  # a commit matches when one of the files it touched does
            where["commit.files" if commits else "metadata.path"] = Prefix(prefix)
        wanted = request.limit
        per_file = 0 if commits else request.per_file  # commits have no file of their own
        hit = _commit_hit if commits else _code_hit
        query = hybrid_query(indexer.embedder_for(served), request.query, where, wanted, exclude, lexical)
        if glob is None:
            return [hit(point) for point in search_points(engine, collection, query, per_file)]
        fetch = min(MAX_CANDIDATES, wanted * GLOB_FACTOR)
        while True:  # the same query (embedded once), for more candidates each round
            points = engine.query(collection, replace(query, limit=fetch, prefetch=fetch * PREFETCH_FACTOR))
            kept = [p for p in points if any(map(glob.match_file, _paths(p)))]
            if len(kept) >= wanted or len(points) < fetch or fetch >= MAX_CANDIDATES:
                return [hit(point) for point in ranked(kept, wanted, per_file)]
            fetch = min(MAX_CANDIDATES, fetch * 4)


def _glob(pattern: str) -> pathspec.PathSpec[Any]:
    try:
        return pathspec.PathSpec.from_lines("gitwildmatch", [pattern])
    except Exception:  # pathspec raises assorted errors for a malformed pattern
        raise InvalidRequest("path_glob is not a valid pattern") from None


def _literal_folders(pattern: str | None) -> str | None:
    """The folders a glob names literally before its first wildcard ("src/lib/" of
    "src/lib/**/*.py"), which every path it matches starts with; None without any."""
    if not pattern or "/" not in pattern.rstrip("/") or pattern.startswith("**"):
        return None  # a pattern without a slash matches at any depth
    literal = pattern.lstrip("/")
    cut = min((literal.find(c) for c in GLOB_SPECIALS if c in literal), default=len(literal))
    folders = literal[:cut].rsplit("/", 1)[0] + "/" if "/" in literal[:cut] else ""
    return folders or None


def _narrowest(prefix: str | None, folders: str | None) -> str | None | Literal[False]:
    """The longer of two prefixes when one extends the other; False when they exclude each other."""
    if not prefix or not folders:
        return prefix or folders
    if prefix.startswith(folders):
        return prefix
    return folders if folders.startswith(prefix) else False


def _paths(point: ScoredPoint) -> list[str]:
    """The path of a chunk, or the files a commit touched."""
    if "commit" in point.payload:
        return [str(f) for f in point.payload["commit"].get("files", [])]
    return [str(point.payload.get("metadata", {}).get("path", ""))]


def _snippet(code: str) -> tuple[str, bool]:
    lines = code.splitlines()
    text = "\n".join(lines[:SNIPPET_LINES])
    cut = text[:SNIPPET_CHARS]
    return cut, len(lines) > SNIPPET_LINES or len(text) > SNIPPET_CHARS


def _code_hit(point: ScoredPoint) -> dict[str, Any]:
    meta = point.payload.get("metadata", {})
    snippet, truncated = _snippet(str(meta.get("code", "")))
    return {
        "path": meta.get("path", ""),
        "host_path": meta.get("host_path"),
        "start_line": meta.get("start_line", 0),
        "end_line": meta.get("end_line", 0),
        "score": round(point.score, 6),
        "language": meta.get("language", ""),
        "snippet": snippet,
        "snippet_truncated": truncated,
        "workspace_key": point.payload.get("workspace"),
    }


def _commit_hit(point: ScoredPoint) -> dict[str, Any]:
    commit = point.payload.get("commit", {})
    return {
        "commit_id": commit.get("commit_id", ""),
        "author": commit.get("author_name", ""),
        "date": commit.get("authored_date", ""),
        "message": commit.get("message", ""),
        "files": commit.get("files", []),
        "files_truncated": bool(commit.get("files_truncated", False)),
        "score": round(point.score, 6),
        "workspace_key": point.payload.get(COMMIT_WORKSPACE),
    }
