"""`GET /bridge/state`: which collection serves a repo, for the MCP bridge's start-up.

Asked by `?workspace=<path>` (with `repo_name`, or `?repo_name=<name>` alone for
`/work/<name>`) or by `?collection=<name>`; the workspace wins when both are given.

    {"workspace_path", "repo_name", "active_collection", "serving_collection",
     "previous_collection", "indexing_status", "staging", "workspace_key", "last_sequence"}

- By workspace: the workspace is found as status finds it (`views.find_workspace`,
  following the path's latest repo identity). Its head record names the collection
  its index lives in: that is both `active_collection` and `serving_collection`
  (the physical name, `<tenant>--<name>` for a tenant: `core.names`). `indexing_status` is
  `indexing` while a bundle is claimed and not committed, `empty` before the first
  commit, else `idle`.
- By collection: the tenant's collection in Qdrant; `workspace_path`, `repo_name`
  and `workspace_key` are null (collections are not indexed by workspace here),
  `indexing_status` is `empty` when it holds no points, else `idle`.
- `previous_collection` is null and `staging` false: there are no blue-green
  rebuilds yet (architecture.md, "Serving through aliases"); when they exist, they
  name the collection being replaced and whether a rebuild is being staged.

Nothing known (no workspace for the path; no such collection, or indexing off) is
`NotFound`, which the bridge reads as "use the local config".
"""

from __future__ import annotations

from typing import Any

from core.config import Settings
from core.errors import InvalidRequest, NotFound
from core.indexing.engines import IndexEngine
from core.indexing.indexer import Indexer
from core.names import check_collection_name, stored_collection
from core.storage import ObjectStore
from core.views import find_workspace

MAX_NAME = 255


def bridge_state(
    store: ObjectStore, settings: Settings, tenant: str, *,
    collection: str, workspace: str, repo_name: str, indexer: Indexer | None,
) -> dict[str, Any]:
    """The bridge's view of one workspace or collection; `NotFound` when nothing is known."""
    if len(repo_name) > MAX_NAME or "\x00" in repo_name or "/" in repo_name or "\\" in repo_name:
        raise InvalidRequest(f"repo_name must be a name of at most {MAX_NAME} characters, "
                             "without slashes or NUL")
    if collection:
        check_collection_name(collection, "collection")  # 400 INVALID_COLLECTION, as on upload
    if workspace or repo_name:
        return _by_workspace(store, settings, tenant, workspace or f"/work/{repo_name}", repo_name)
    if collection:
        return _by_collection(stored_collection(tenant, collection), indexer)
    raise InvalidRequest("give collection, or workspace (and repo_name)")


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
        "previous_collection": None,  # no blue-green rebuilds yet
        "indexing_status": status,
        "staging": False,
        **extra,
    }
