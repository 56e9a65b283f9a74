"""`GET /bridge/state`: which collection serves a repo, for the MCP bridge's start-up.

Asked by `?workspace=<path>` (with `repo_name`, or `?repo_name=<name>` alone for
`/work/<name>`) or by `?collection=<name>`; the workspace wins when both are given.

    {"workspace_path", "repo_name", "active_collection", "serving_collection",
     "previous_collection", "indexing_status", "staging", "workspace_key", "last_sequence"}

- By workspace: the workspace is found as status finds it (`views.find_workspace`,
  following the path's latest repo identity). Its head record names the collection
  its index lives in: that is both `active_collection` and `serving_collection`
  (the served name, `<tenant>--<name>` for a tenant: `core.names`, an alias that
  always names the physical collection serving now, so a client querying it follows
  a reindex's switch; `physical_collection` says which that is). `indexing_status` is
  `indexing` while a bundle is claimed and not committed, `empty` before the first
  commit, else `idle`.
- By collection: the tenant's collection in Qdrant; `workspace_path`, `repo_name`
  and `workspace_key` are null (collections are not indexed by workspace here),
  `indexing_status` is `empty` when it holds no points, else `idle`.
- `staging` is true while a reindex builds a new physical collection for it
  (`core.reindex`; `staging_collection` names it, `previous_collection` the one
  serving until the switch); after a switch, `previous_collection` names the one
  it replaced until that is dropped. Otherwise both are null and `staging` false.

Nothing known (no workspace for the path; no such collection, or indexing off) is
`NotFound`, which the bridge reads as "use the local config".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from core.config import Settings
from core.errors import DeltaError, InvalidRequest, NotFound
from core.indexing.engines import IndexEngine
from core.indexing.indexer import Indexer
from core.names import check_collection_name, stored_collection
from core.reindex import ACTIVE, JobState, ReindexJob
from core.storage import ObjectStore
from core.views import find_workspace

MAX_NAME = 255


def bridge_state(
    store: ObjectStore, settings: Settings, tenant: str, *,
    collection: str, workspace: str, repo_name: str, indexer: Indexer | None,
    rebuild_of: Callable[[str], ReindexJob | None] = lambda name: None,
) -> dict[str, Any]:
    """The bridge's view of one workspace or collection; `NotFound` when nothing is known."""
    if len(repo_name) > MAX_NAME or "\x00" in repo_name or "/" in repo_name or "\\" in repo_name:
        raise InvalidRequest(f"repo_name must be a name of at most {MAX_NAME} characters, "
                             "without slashes or NUL")
    if collection:
        check_collection_name(collection, "collection")  # 400 INVALID_COLLECTION, as on upload
    if workspace or repo_name:
        found = _by_workspace(store, settings, tenant, workspace or f"/work/{repo_name}", repo_name)
    elif collection:
        found = _by_collection(stored_collection(tenant, collection), indexer)
    else:
        raise InvalidRequest("give collection, or workspace (and repo_name)")
    return {**found, **_serving(found["active_collection"], indexer, rebuild_of)}


def _serving(name: str, indexer: Indexer | None, rebuild_of: Callable[[str], ReindexJob | None]
             ) -> dict[str, Any]:
    """Which physical collection serves `name`, and a rebuild being staged for it."""
    physical = None
    if indexer is not None:
        with contextlib.suppress(DeltaError):
            physical = indexer.call(lambda engine: engine.resolve(name))
    job = rebuild_of(name)
    staging = job is not None and job.state in ACTIVE
    replacing = job is not None and (staging or job.state == JobState.DONE and not job.retired)
    previous = job.serving if job is not None and replacing else None
    return {"physical_collection": physical, "staging": staging,
            "staging_collection": job.target if job is not None and staging else None,
            "previous_collection": previous}


def _by_workspace(store: ObjectStore, settings: Settings, tenant: str, path: str,
                  repo_name: str) -> dict[str, Any]:
    ws, head = find_workspace(store, settings, tenant, path, None)
    if head is None:
        raise NotFound("no workspace is known for this path")
    status = "indexing" if head.pending is not None else ("idle" if head.last_sequence else "empty")
    leaf = head.workspace_path.rstrip("/").rsplit("/", 1)[-1]
    return _answer(head.workspace_path, repo_name or leaf, head.collection_name, status,
                   workspace_key=ws, last_sequence=head.last_sequence)


def _by_collection(name: str, indexer: Indexer | None) -> dict[str, Any]:
    if indexer is None:
        raise NotFound("indexing is off: no collection is served")

    def points(engine: IndexEngine) -> int | None:
        return engine.count(name, None) if engine.collection_exists(name) else None

    held = indexer.call(points)
    if held is None:
        raise NotFound("no such collection")
    return _answer(None, None, name, "idle" if held else "empty",
                   workspace_key=None, last_sequence=None)


def _answer(path: str | None, repo_name: str | None, collection: str, status: str,
            **extra: Any) -> dict[str, Any]:
    return {
        "workspace_path": path,
        "repo_name": repo_name,
        "active_collection": collection,
        "serving_collection": collection,
        "indexing_status": status,
        **extra,
    }
