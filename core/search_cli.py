"""`delta-upload search`: opens Qdrant exactly as the service does (same settings).

`--workspace-path` names the workspace as status and manifest do: with
`--logical-repo-id` that identity's workspace, without it the one the path's
latest upload with a repo identity went to (its alias record), else the path's
own. Without `--collection`, the workspace's own collection is searched.

An embedded Qdrant folder can be open in one process at a time: stop the
service first, or point both at a Qdrant server.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.config import ConfigError, load_settings
from core.errors import DeltaError
from core.indexing.indexer import Indexer
from core.indexing.search import hybrid_search
from core.names import check_stored_collection
from core.qdrant import QdrantHandle
from core.storage import open_store
from core.views import find_workspace

SNIPPET_LINES = 3


def run_search(args: argparse.Namespace) -> int:
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
            engine, indexer.embedder, collection, workspace, args.query, max(1, args.limit)))
    except (ConfigError, DeltaError) as exc:
        print(f"delta-upload: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([{"path": h.path, "start_line": h.start_line, "end_line": h.end_line,
                           "score": round(h.score, 6)} for h in hits]))
        return 0
    for hit in hits:
        print(f"{hit.path}:{hit.start_line}-{hit.end_line}  score={hit.score:.4f}")
        if not args.quiet:
            for line in hit.code.splitlines()[:SNIPPET_LINES]:
                print(f"    {line}")
    if not hits:
        print("no hits")
    return 0
