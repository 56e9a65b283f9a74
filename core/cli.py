"""`delta-upload`: the project's command line.

    delta-upload search "query" --workspace-path /work/myrepo [--collection C] [--limit N] [--json]

Opens Qdrant exactly as the service does (the same settings: QDRANT_URL,
EMBEDDING_MODEL, COLLECTION_NAME, …). An embedded Qdrant folder can be open in
one process at a time: stop the service, or point both at a Qdrant server.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from core.config import ConfigError, load_settings
from core.errors import DeltaError
from core.indexing.indexer import Indexer
from core.indexing.search import hybrid_search
from core.keys import workspace_key
from core.qdrant import QdrantHandle

SNIPPET_LINES = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="delta-upload", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    search = commands.add_parser("search", help="hybrid search over an indexed workspace")
    search.add_argument("query")
    search.add_argument("--workspace-path", help="limit hits to this workspace (as uploaded)")
    search.add_argument("--logical-repo-id", help="the repo id the workspace was uploaded with")
    search.add_argument("--collection", help="collection (default: COLLECTION_NAME)")
    search.add_argument("--limit", type=int, default=10)
    search.add_argument("--json", action="store_true", help="print a JSON list of hits")
    args = parser.parse_args(argv)
    try:
        return _search(args)
    except (ConfigError, DeltaError) as exc:
        print(f"delta-upload: {exc}", file=sys.stderr)
        return 2


def _search(args: argparse.Namespace) -> int:
    settings = load_settings()
    indexer = Indexer(settings, QdrantHandle(settings))
    collection = args.collection or settings.collection_name
    workspace = (workspace_key("", args.workspace_path, args.logical_repo_id)
                 if args.workspace_path else None)
    hits = indexer.call(lambda client: hybrid_search(
        client, indexer.embedder, collection, workspace, args.query, max(1, args.limit)))
    if args.json:
        print(json.dumps([{"path": h.path, "start_line": h.start_line, "end_line": h.end_line,
                           "score": round(h.score, 6)} for h in hits]))
        return 0
    for hit in hits:
        print(f"{hit.path}:{hit.start_line}-{hit.end_line}  score={hit.score:.4f}")
        for line in hit.code.splitlines()[:SNIPPET_LINES]:
            print(f"    {line}")
    if not hits:
        print("no hits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
