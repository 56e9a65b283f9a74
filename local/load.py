"""Load test on loopback: many workspaces at once, plus writers racing on one workspace.

    python -m local.load [--seconds 60] [--workspaces 16] [--racers 4] [--indexing]

Starts the service (router target, filesystem backend, embedded Qdrant in
memory) on a free loopback port, then for a bounded time every workspace
client uploads bundles of small edits in a loop, while the racers all upload to
one shared workspace. Afterwards it checks that every workspace's stored tree
equals what its client sent, that each journal holds sequences 1..n with no gap
or duplicate, and that no request got a 5xx. Prints requests per second,
p50/p99 latency and the error count; exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.bundles import BundleBuilder
from tests.support.service import ServiceProcess

SHARED = "/work/load-shared"


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, seconds: float, problem: str | None) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if problem:
                self.errors.append(problem)


class Writer:
    """One client: keeps a model of the files it sent and sends random edits."""

    def __init__(self, url: str, workspace: str, prefix: str, seed: int) -> None:
        self.url = url
        self.workspace = workspace
        self.prefix = prefix
        self.random = random.Random(seed)
        self.files: dict[str, bytes] = {}
        self.session = requests.Session()

    def next_bundle(self) -> bytes:
        """1-5 edits, each on a different path, applied to the model as they are made."""
        builder = BundleBuilder()
        existing = sorted(self.files)
        self.random.shuffle(existing)
        for _ in range(self.random.randint(1, 5)):
            roll = self.random.random()
            if existing and roll < 0.2:
                path = existing.pop()
                builder.deleted(path)
                del self.files[path]
            elif existing and roll < 0.5:
                path = existing.pop()
                data = f"{path} v{self.random.random()}\n".encode()
                builder.updated(path, data, previous=self.files[path])
                self.files[path] = data
            else:
                path = f"{self.prefix}/f{self.random.randrange(10**12)}.py"
                data = f"def f():\n    return {self.random.random()}\n".encode()
                builder.created(path, data)
                self.files[path] = data
        return builder.build()

    def run(self, deadline: float, tally: Tally) -> None:
        while time.monotonic() < deadline:
            snapshot = dict(self.files)
            body = self.next_bundle()
            started = time.monotonic()
            try:
                answer = self.session.post(
                    self.url + "/api/v1/delta/upload",
                    data={"workspace_path": self.workspace, "force": "False"},
                    files={"bundle": ("b.tar.gz", body, "application/gzip")}, timeout=120)
                problem = None if answer.status_code == 200 else f"{answer.status_code} {answer.text[:120]}"
            except requests.RequestException as exc:
                problem = f"transport: {type(exc).__name__}"
            tally.record(time.monotonic() - started, problem)
            if problem:
                self.files = snapshot  # not applied: forget the edits


def verify(root: Path, url: str, writers: list[Writer]) -> list[str]:
    problems = []
    expected: dict[str, dict[str, bytes]] = {}
    for writer in writers:
        expected.setdefault(writer.workspace, {}).update(writer.files)
    for workspace, files in expected.items():
        status = requests.get(url + "/api/v1/delta/status", params={"workspace_path": workspace},
                              timeout=30).json()
        ws_dir = root / "workspaces" / status["workspace_key"]
        tree_dir = ws_dir / "tree"
        tree = {p.relative_to(tree_dir).as_posix(): p.read_bytes()
                for p in tree_dir.rglob("*") if p.is_file()} if tree_dir.exists() else {}
        if tree != files:
            problems.append(f"{workspace}: stored tree differs from what its clients sent")
        numbers = sorted(json.loads(p.read_text())["sequence_number"]
                         for p in (ws_dir / "journal").glob("*.json")) if ws_dir.exists() else []
        if numbers != list(range(1, status["last_sequence"] + 1)):
            problems.append(f"{workspace}: sequences have gaps or duplicates")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workspaces", type=int, default=16)
    parser.add_argument("--racers", type=int, default=4)
    parser.add_argument("--indexing", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        env = {"WORK_DIR": str(root / "storage"), "QDRANT_URL": ":memory:",
               "INDEXING_ENABLED": "true" if args.indexing else "false", "CLAIM_WAIT_SECS": "60"}
        service = ServiceProcess(env, root / "service.log").start()
        try:
            writers = [Writer(service.url, f"/work/load-{i}", "src", i) for i in range(args.workspaces)]
            writers += [Writer(service.url, SHARED, f"racer{i}", 1000 + i) for i in range(args.racers)]
            tally = Tally()
            deadline = time.monotonic() + args.seconds
            started = time.monotonic()
            threads = [threading.Thread(target=w.run, args=(deadline, tally)) for w in writers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            problems = verify(root / "storage", service.url, writers)
        finally:
            service.stop()
    latencies = sorted(tally.latencies)
    server_errors = [e for e in tally.errors if e.startswith("5") or e.startswith("transport")]
    p50 = statistics.median(latencies) * 1000 if latencies else 0.0
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else 0.0
    print(f"load: {len(writers)} clients ({args.workspaces} workspaces + {args.racers} racers on one), "
          f"{elapsed:.1f} s, indexing {'on' if args.indexing else 'off'}")
    print(f"  requests {len(latencies)}  ({len(latencies) / elapsed:.1f}/s)   p50 {p50:.0f} ms   "
          f"p99 {p99:.0f} ms   errors {len(tally.errors)} (5xx/transport {len(server_errors)})")
    for problem in problems + tally.errors[:10]:
        print(f"  FAIL {problem}")
    return 1 if problems or tally.errors else 0


if __name__ == "__main__":
    sys.exit(main())
