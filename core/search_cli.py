"""`delta-upload search`: opens Qdrant exactly as the service does (same settings).

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
from core.keys import workspace_key
from core.qdrant import QdrantHandle

SNIPPET_LINES = 3


def run_search(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        indexer = Indexer(settings, QdrantHandle(settings))
        collection = args.collection or settings.collection_name
        workspace = (workspace_key("", args.workspace_path, args.logical_repo_id)
                     if args.workspace_path else None)
        hits = indexer.call(lambda client: hybrid_search(
            client, indexer.embedder, collection, workspace, args.query, max(1, args.limit)))
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
