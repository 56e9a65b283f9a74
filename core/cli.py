"""`delta-upload`: keep a workspace in sync with the service, and look at what it indexed.

    delta-upload push PATH --endpoint URL [--collection C] [--logical-repo-id ID] [--force]
    delta-upload watch PATH --endpoint URL [--interval S]
    delta-upload status PATH --endpoint URL
    delta-upload bundle PATH -o FILE
    delta-upload smoke --url URL
    delta-upload hash-key KEY
    delta-upload search "query" --workspace-path /work/myrepo [--endpoint URL] [--limit N] [--commits]

Every command takes --json (machine-readable output) and --quiet (no progress,
only errors). Exit codes: 0 success, 1 the operation failed, 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.client import RemoteUploadClient, SyncResult
from core.client.transport import Refused, TransportError

MAX_WATCH_BACKOFF_S = 300.0
DEFAULT_ENDPOINT = "http://127.0.0.1:8002"


def main(argv: Sequence[str] | None = None) -> int:
    # warnings (retries, parked bundles) and errors only, before any library (wordllama
    # calls basicConfig at INFO on import) configures logging its own way
    logging.basicConfig(level=logging.WARNING, format="delta-upload: %(levelname)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 0
    except (TransportError, Refused) as exc:
        _fail(args, str(exc))
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="delta-upload", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, run: Any, workspace: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if workspace:
            sub.add_argument("path", type=Path, help="the local workspace folder")
        sub.add_argument("--json", action="store_true", help="print JSON for scripts")
        sub.add_argument("--quiet", action="store_true", help="no progress bars or summaries")
        sub.set_defaults(run=run)
        return sub

    def identity(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--logical-repo-id", help="repo identity sent to the server (default: "
                         "git:<sha1 of the git common dir> in a git repository, else fs:<sha1 of "
                         "the folder>, as the other Context-Engine clients compute it)")

    def remote(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--endpoint", required=True, help="service URL, e.g. http://127.0.0.1:8002")
        sub.add_argument("--collection", help="Qdrant collection for this workspace")
        sub.add_argument("--remote-path", help="workspace path on the server (default /work/<folder>)")
        sub.add_argument("--cache-dir", type=Path, help="where the local sync record is kept")
        identity(sub)
        sub.add_argument("--retries", type=int, default=5, help="retries of a failing request")
        sub.add_argument("--token", default=os.environ.get("DELTA_UPLOAD_TOKEN"),
                         help="API key or bearer token (default: $DELTA_UPLOAD_TOKEN)")

    push = command("push", "upload what changed since the last push", _push)
    remote(push)
    push.add_argument("--force", action="store_true", help="send force=True with each bundle")
    watch = command("watch", "keep pushing changes until interrupted", _watch)
    remote(watch)
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between scans")
    watch.add_argument("--rounds", type=int, default=0, help="stop after N scans (0: never)")
    remote(command("status", "the server's status for this workspace", _status))
    bundle = command("bundle", "write the bundle(s) a push would send, without sending", _bundle)
    bundle.add_argument("-o", "--output", type=Path, required=True, help="bundle file to write")
    bundle.add_argument("--endpoint", help="diff against what was pushed to this service "
                        "(without it, every file is new)")
    bundle.add_argument("--collection")
    bundle.add_argument("--remote-path")
    bundle.add_argument("--cache-dir", type=Path)
    identity(bundle)
    smoke = command("smoke", "check health, status and an upload against a service", _smoke,
                    workspace=False)
    smoke.add_argument("--url", required=True)
    hashed = command("hash-key", "print the digest of an API key for API_KEYS_FILE", _hash_key,
                     workspace=False)
    hashed.add_argument("key", help="the API key (read from stdin when '-')")
    search = command("search", "hybrid search over what the service indexed", _search, workspace=False)
    search.add_argument("query")
    search.add_argument("--workspace-path", help="the workspace, as uploaded (e.g. /work/myrepo)")
    search.add_argument("--logical-repo-id", help="the repo id the workspace was uploaded with")
    search.add_argument("--collection", help="a whole collection (with --workspace-path: the "
                        "workspace's points in it)")
    search.add_argument("--limit", type=int, default=10, help="hits wanted, 1-100 (default 10)")
    search.add_argument("--path-prefix", help="only paths starting with it, e.g. src/")
    search.add_argument("--glob", help="only paths a gitignore-style pattern matches, e.g. '*.py'")
    search.add_argument("--language", help="only chunks of this language, e.g. python")
    search.add_argument("--commits", action="store_true", help="search the git history instead of code")
    search.add_argument("--endpoint", default=os.environ.get("DELTA_UPLOAD_ENDPOINT", DEFAULT_ENDPOINT),
                        help="service URL (default: $DELTA_UPLOAD_ENDPOINT, else %(default)s)")
    search.add_argument("--token", default=os.environ.get("DELTA_UPLOAD_TOKEN"),
                        help="API key or bearer token (default: $DELTA_UPLOAD_TOKEN)")
    search.add_argument("--direct", action="store_true", help="read Qdrant directly with the "
                        "service's settings instead of asking the service (it must be stopped, "
                        "or use a Qdrant server)")
    return parser


def _client(args: argparse.Namespace, endpoint: str = "http://unused.invalid") -> RemoteUploadClient:
    if not args.path.is_dir():
        raise SystemExit(f"delta-upload: {args.path} is not a folder")
    return RemoteUploadClient(
        getattr(args, "endpoint", None) or endpoint, args.path,
        collection_name=args.collection, remote_path=args.remote_path,
        cache_dir=args.cache_dir, logical_repo_id=args.logical_repo_id,
        retries=getattr(args, "retries", 5),
        force=getattr(args, "force", False), progress=_interactive(args),
        token=getattr(args, "token", None),
    )


def _push(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.sync()
    _report_sync(args, result)
    return 0 if result.success else 1


def _watch(args: argparse.Namespace) -> int:
    delay = args.interval
    rounds = 0
    with _client(args) as client:
        while not args.rounds or rounds < args.rounds:
            rounds += 1
            result = client.sync()
            if result.bundles_sent or not result.success:
                _report_sync(args, result)
            delay = args.interval if result.success else min(MAX_WATCH_BACKOFF_S, delay * 2)
            if not args.rounds or rounds < args.rounds:
                time.sleep(delay)
    return 0


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        answer = client.status()
    if args.json:
        print(json.dumps(answer))
    elif not args.quiet:
        print(f"{answer['workspace_path']}: sequence {answer['last_sequence']}, "
              f"collection {answer['collection_name']}, last upload {answer['last_upload']}, "
              f"pending operations {answer['pending_operations']}")
    return 0


def _bundle(args: argparse.Namespace) -> int:
    with _client(args) as client, tempfile.TemporaryDirectory() as work:
        built = client.build_bundles(Path(work))
        written = []
        for number, path in enumerate(built, start=1):
            target = args.output if number == 1 else args.output.with_name(
                f"{args.output.name.removesuffix('.tar.gz')}.{number}.tar.gz")
            shutil.copyfile(path, target)
            written.append(str(target))
    if args.json:
        print(json.dumps({"bundles": written}))
    elif not args.quiet:
        print("no changes" if not written else "\n".join(written))
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from core.client.smoke import run_smoke

    checks = run_smoke(args.url)
    for name, ok, detail in checks:
        if args.json:
            print(json.dumps({"check": name, "ok": ok, "detail": detail}))
        else:
            print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return 0 if all(ok for _, ok, _ in checks) else 1


def _hash_key(args: argparse.Namespace) -> int:
    from core.auth import hash_key

    key = sys.stdin.readline().strip() if args.key == "-" else args.key
    print(json.dumps({"digest": hash_key(key)}) if args.json else hash_key(key))
    return 0


def _search(args: argparse.Namespace) -> int:
    from core.search_cli import run_search

    return run_search(args)


def _report_sync(args: argparse.Namespace, result: SyncResult) -> None:
    if args.json:
        print(json.dumps(asdict(result)))
        return
    if not result.success:
        _fail(args, result.error or "push failed")
        return
    if args.quiet:
        return
    ops = ", ".join(f"{n} {k}" for k, n in sorted(result.operations.items())) or "no changes"
    skipped = result.skipped_binary + result.skipped_large
    print(f"pushed {result.bundles_sent} bundle(s): {ops}; sequence {result.last_sequence}"
          + (f"; skipped {skipped} binary/large file(s)" if skipped else "")
          + ("; resynchronised from the server's manifest" if result.resynced else ""))


def _fail(args: argparse.Namespace, message: str) -> None:
    print(f"delta-upload: {message}", file=sys.stderr)


def _interactive(args: argparse.Namespace) -> bool:
    return not (args.quiet or args.json) and sys.stderr.isatty()


if __name__ == "__main__":
    sys.exit(main())
