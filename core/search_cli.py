"""`delta-upload search`: ask the running service (`POST /api/v1/search`), or, with
`--direct`, open Qdrant exactly as the service does (same settings).

`--workspace-path` names the workspace as status and manifest do: with
`--logical-repo-id` that identity's workspace, without it the one the path's
latest upload went to (its alias record), else the path's own. Without
`--collection`, the workspace's own collection is searched.

`--direct` is for a service that is stopped, or a Qdrant server both can reach:
an embedded Qdrant folder can be open in one process at a time. There,
`--collection` is the stored name (`<tenant>--<name>` with a tenant), and only
code is searched, without filters.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from core.client.transport import Transport

SNIPPET_LINES = 3
SEARCH_RETRIES = 2


def run_search(args: argparse.Namespace) -> int:
    """Exit 0 with hits (or none), 1 when the service refused or failed, 2 for bad usage."""
    if args.limit < 1:
        print("delta-upload: --limit must be at least 1", file=sys.stderr)
        return 2
    if not args.workspace_path and not args.collection:
        print("delta-upload: give --workspace-path or --collection", file=sys.stderr)
        return 2
    if args.direct:
        return _direct(args)
    body: dict[str, Any] = {
        "query": args.query, "workspace_path": args.workspace_path,
        "logical_repo_id": args.logical_repo_id, "collection_name": args.collection,
        "limit": args.limit, "path_prefix": args.path_prefix, "path_glob": args.glob,
        "language": args.language, "kind": "commits" if args.commits else "code",
    }
    transport = Transport(args.endpoint, retries=SEARCH_RETRIES, token=args.token)
    try:
        answer = transport.post_json("/api/v1/search", {k: v for k, v in body.items() if v is not None})
    finally:
        transport.close()
    hits: list[dict[str, Any]] = answer["hits"]
    if args.json:
        print(json.dumps(hits))
    elif args.commits:
        _print_commits(hits, args.quiet)
    else:
        _print_code(hits, args.quiet)
    return 0


def _print_code(hits: list[dict[str, Any]], quiet: bool) -> None:
    for hit in hits:
        print(f"{hit['path']}:{hit['start_line']}-{hit['end_line']}  score={hit['score']:.4f}")
        if not quiet:
            for line in str(hit.get("snippet", "")).splitlines()[:SNIPPET_LINES]:
                print(f"    {line}")
    if not hits:
        print("no hits")


def _print_commits(hits: list[dict[str, Any]], quiet: bool) -> None:
    for hit in hits:
        subject = (str(hit["message"]).splitlines() or [""])[0]
        print(f"{hit['commit_id'][:12]}  {hit['date']}  {hit['author']}  score={hit['score']:.4f}")
        print(f"    {subject}")
        if not quiet and hit["files"]:
            print(f"    files: {' '.join(hit['files'][:10])}" + (" …" if len(hit["files"]) > 10 else ""))
    if not hits:
        print("no hits")


def _direct(args: argparse.Namespace) -> int:
    if args.commits or args.path_prefix or args.glob or args.language:
        print("delta-upload: --direct searches code without filters: drop --commits, "
              "--path-prefix, --glob and --language, or ask the service", file=sys.stderr)
        return 2
    from core.config import ConfigError, load_settings  # the engine's libraries: only here
    from core.errors import DeltaError
    from core.indexing.indexer import Indexer
    from core.indexing.search import hybrid_search
    from core.names import check_stored_collection
    from core.qdrant import QdrantHandle
    from core.storage import open_store
    from core.views import find_workspace

    try:
        settings = load_settings()
        indexer = Indexer(settings, QdrantHandle(settings))
        workspace, head = None, None
        if args.workspace_path:  # the workspace status and manifest would answer for
            workspace, head = find_workspace(open_store(settings), settings, "",
                                             args.workspace_path, args.logical_repo_id)
        collection = args.collection or (head.collection_name if head else settings.collection_name)
        check_stored_collection(collection, "--collection")  # a physical name: `<tenant>--<name>` too
        hits = indexer.call(lambda engine: hybrid_search(
            engine, indexer.embedder, collection, workspace, args.query, args.limit))
    except ConfigError as exc:
        print(f"delta-upload: {exc}", file=sys.stderr)
        return 2
    except DeltaError as exc:
        print(f"delta-upload: {exc}", file=sys.stderr)
        return 2 if exc.http_status < 500 else 1
    answer = [{"path": h.path, "start_line": h.start_line, "end_line": h.end_line,
               "score": round(h.score, 6), "language": h.language, "snippet": h.code} for h in hits]
    if args.json:
        print(json.dumps(answer))
    else:
        _print_code(answer, args.quiet)
    return 0
