"""Rebuilding a collection from the stored trees while it serves (`core.reindex`), over HTTP.

Real services on the filesystem backend with the embedded engine: a workspace of real
files (the virtualenv's own packages), a writer that keeps uploading one-file deltas
and a reader that keeps searching while the rebuild runs, an embedder changed under a
running deployment, and reindexing instances that die at each step of a job and are
continued by another. Afterwards the served collection must hold exactly the points a
fresh index of the final tree would: every chunk of every file, every commit, nothing
else.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3

from core.indexing.chunker import chunk_text
from core.indexing.commits import COMMIT_WORKSPACE, commit_point_id
from core.indexing.engines.edge import EdgeEngine
from core.indexing.languages import decode_text, language_of
from core.indexing.sync import point_id
from core.keys import workspace_key
from tests.support.bundles import BundleBuilder, RawMember
from tests.support.service import ServiceProcess

REPO = "/work/reindexed"
COLLECTION = "rebuilt"
PACKAGES = [Path(requests.__file__).parent, Path(urllib3.__file__).parent]  # real code nobody here wrote
COMMITS = [{"commit_id": hashlib.sha1(str(n).encode()).hexdigest(), "author_name": "dev",
            "authored_date": "2026-11-30T10:00:00Z", "message": f"change number {n} of the session api",
            "files": [f"requests/file{n}.py"], "diff": f"+ line {n}"} for n in range(3)]
WS = workspace_key("", REPO, None)


def tree_files() -> dict[str, bytes]:
    files = {f"{package.name}/{p.relative_to(package)}": p.read_bytes()
             for package in PACKAGES for p in sorted(package.rglob("*.py"))}
    files.update({f"notes/note{n}.md": f"# note {n}\nthe writer replaces this note\n".encode()
                  for n in range(5)})
    return files


def first_bundle(files: dict[str, bytes]) -> bytes:
    bundle = BundleBuilder(workspace_path=REPO, collection_name=COLLECTION)
    for path, data in files.items():
        bundle.created(path, data)
    history = json.dumps({"commits": COMMITS}).encode()
    bundle.extra_members.append(RawMember(f"{bundle.bundle_id}/metadata/git_history.json", history))
    return bundle.build()


def start(root: Path, name: str, **env: str) -> ServiceProcess:
    return ServiceProcess({"WORK_DIR": str(root / "storage"), "QDRANT_URL": str(root / "qdrant"),
                           "LEASE_SECS": "4", "CLAIM_WAIT_SECS": "10", **env}, root / f"{name}.log").start()


def reindex(service: ServiceProcess, **body: Any) -> requests.Response:
    return requests.post(service.url + "/api/v1/admin/reindex", json=body, timeout=30)


def job_of(service: ServiceProcess) -> dict[str, Any]:
    answer = requests.get(service.url + "/api/v1/admin/reindex", timeout=30)
    assert answer.status_code == 200, answer.text
    [collection] = [c for c in answer.json()["collections"] if c["collection_name"] == COLLECTION]
    return dict(collection)


def wait_until_done(service: ServiceProcess, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job_of(service)
        if state["reindex"] and state["reindex"]["state"] == "done":
            return state
        time.sleep(0.2)
    raise AssertionError(f"the reindex did not finish: {job_of(service)}")


def expected_ids(storage: Path) -> set[str]:
    """The points a fresh index of the stored tree holds: every chunk, every commit."""
    tree = storage / "workspaces" / WS / "tree"
    ids = {commit_point_id(WS, commit["commit_id"]) for commit in COMMITS}
    for file in tree.rglob("*"):
        if not file.is_file():
            continue
        path = str(file.relative_to(tree))
        text = decode_text(file.read_bytes())
        assert text is not None
        seen: Counter[str] = Counter()
        for chunk in chunk_text(text, language_of(path)):
            digest = hashlib.sha1(chunk.text.encode("utf-8")).hexdigest()
            seen[digest] += 1
            ids.add(point_id(WS, path, digest, seen[digest]))
    return ids


def served_points(root: Path) -> tuple[str, set[str], list[str]]:
    """(physical collection serving, ids of the workspace's points, physical folders)."""
    engine = EdgeEngine(root / "qdrant", hnsw_min_points=10**9)
    try:
        stored = COLLECTION
        physical = engine.resolve(stored)
        assert physical is not None
        ids = {p.id for p in engine.scroll(stored, {"workspace": WS}, vectors=False)}
        ids |= {p.id for p in engine.scroll(stored, {COMMIT_WORKSPACE: WS}, vectors=False)}
        folders = sorted(p.name for p in (root / "qdrant" / "collections").iterdir())
        return physical, ids, folders
    finally:
        engine.close()


class Writer(threading.Thread):
    """Keeps replacing the notes, one one-file delta at a time, until told to stop."""

    def __init__(self, service: ServiceProcess) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.stopping = threading.Event()
        self.uploads = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            n = self.uploads
            bundle = BundleBuilder(workspace_path=REPO, collection_name=COLLECTION)
            bundle.updated(f"notes/note{n % 5}.md", f"# note {n % 5}\nwritten by upload {n}\n".encode())
            answer = self.service.upload(bundle.build(), REPO)
            if answer.status_code != 200:
                self.failures.append(answer.text)
            self.uploads += 1
            time.sleep(0.15)


class Reader(threading.Thread):
    """Keeps searching; every search must answer, and find the session code."""

    def __init__(self, service: ServiceProcess) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.stopping = threading.Event()
        self.searches = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            answer = requests.get(self.service.url + "/api/v1/search", timeout=30, params={
                "query": "send a prepared request with the session's adapters", "workspace_path": REPO})
            if answer.status_code != 200 or not answer.json()["hits"]:
                self.failures.append(f"{answer.status_code} {answer.text[:300]}")
            self.searches += 1


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def test_a_rebuild_while_a_writer_uploads_and_a_reader_searches_leaves_a_fresh_index(root: Path) -> None:
    service = start(root, "a")
    try:
        files = tree_files()
        answer = service.upload(first_bundle(files), REPO)
        assert answer.status_code == 200, answer.text
        before = job_of(service)
        assert before["drift"] == [] and before["needs_reindex"] is False and before["reindex"] is None
        assert before["built_with"]["embedder"] == "wordllama" and before["built_with"]["chunker"]
        writer, reader = Writer(service), Reader(service)
        writer.start()
        reader.start()
        time.sleep(0.5)
        started = reindex(service, collection_name=COLLECTION)
        assert started.status_code == 202, started.text
        [job] = started.json()["jobs"]
        assert job["state"] == "building" and job["workspaces_total"] == 1
        uploads_at_start = writer.uploads
        done = wait_until_done(service)
        during = writer.uploads - uploads_at_start
        time.sleep(0.5)  # a few uploads after the switch, into the new collection
        writer.stopping.set()
        writer.join()
        reader.stopping.set()
        reader.join()
        assert writer.failures == [] and reader.failures == []
        assert during >= 3 and reader.searches >= 10, (during, reader.searches)
        assert done["serving"] == job["target"] != before["serving"]
        assert done["reindex"]["files_done"] >= len(files) and done["reindex"]["commits_done"] == 3
        status = service.status(REPO).json()
        assert status["index"]["serving"] == job["target"] and status["index"]["needs_reindex"] is False
        metrics = requests.get(service.url + "/metrics", timeout=10).text
        assert "delta_reindex_files_total" in metrics
        assert 'delta_reindex_jobs_total{outcome="done"}' in metrics
        time.sleep(4.6)  # the replaced collection goes once no request can be using it
    finally:
        assert service.stop() == 0
    physical, ids, folders = served_points(root)
    assert physical == job["target"] and folders == [physical]
    assert ids == expected_ids(root / "storage")


def test_a_changed_embedder_drifts_keeps_serving_and_is_cured_by_one_reindex(root: Path) -> None:
    """Start with another embedder: no 409, uploads and searches go on (lexical only), the
    drift is reported, and `all_drifted` rebuilds with the running embedder."""
    first = start(root, "none", EMBEDDING_MODEL="none")
    try:
        assert first.upload(first_bundle(tree_files()), REPO).status_code == 200
    finally:
        assert first.stop() == 0
    service = start(root, "wordllama")
    try:
        drifted = job_of(service)
        assert drifted["needs_reindex"] and any("embedder 'none'" in r for r in drifted["drift"])
        note = BundleBuilder(workspace_path=REPO, collection_name=COLLECTION)
        note.updated("notes/note0.md", b"# note 0\nthe adapters mount prefixes\n")
        assert service.upload(note.build(), REPO).status_code == 200  # never a 409
        found = requests.get(service.url + "/api/v1/search", timeout=30, params={
            "query": "adapters mount prefixes", "workspace_path": REPO})
        assert found.status_code == 200 and found.json()["hits"][0]["path"] == "notes/note0.md"
        assert service.status(REPO).json()["index"]["drift"] == drifted["drift"]
        started = reindex(service, all_drifted=True)
        assert started.status_code == 202 and len(started.json()["jobs"]) == 1, started.text
        cured = wait_until_done(service)
        assert cured["drift"] == [] and cured["built_with"]["embedder"] == "wordllama"
        assert reindex(service, all_drifted=True).json()["jobs"] == []  # nothing drifted any more
    finally:
        assert service.stop() == 0
    _, ids, _ = served_points(root)
    assert ids == expected_ids(root / "storage")


def test_a_reindexing_instance_that_dies_at_any_step_is_continued_by_another(root: Path) -> None:
    """Each instance dies at one step of the job (after a batch, before the switch, after
    it); the next one continues from the job's record in storage."""
    service = start(root, "setup")
    try:
        assert service.upload(first_bundle(tree_files()), REPO).status_code == 200
        serving_before = job_of(service)["serving"]
    finally:
        assert service.stop() == 0
    for step in ("reindex_after_batch", "reindex_before_switch", "reindex_after_switch"):
        dying = start(root, step, FAULT_INJECTION=f"{step}:crash:{COLLECTION}")
        answer = reindex(dying, collection_name=COLLECTION)
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 60
        while b"exited with code 137" not in dying.log_path.read_bytes():  # its worker died at the step
            assert time.monotonic() < deadline, f"no crash at {step}"
            time.sleep(0.1)
        dying.stop()
    survivor = start(root, "survivor")
    try:
        state = job_of(survivor)
        assert state["reindex"]["state"] == "switching"  # as the last one left it: switched, not recorded
        staged = requests.get(survivor.url + "/bridge/state", params={"workspace": REPO}, timeout=10).json()
        assert staged["staging"] is True and staged["staging_collection"] == state["reindex"]["target"]
        assert staged["physical_collection"] == state["reindex"]["target"]  # the switch itself happened
        assert staged["previous_collection"] == serving_before
        # the scheduled run continues a job whose instance died, once its lease ran out
        time.sleep(state["reindex"]["lease_expires_in_s"] + 0.6)
        swept = requests.post(survivor.url + "/api/v1/admin/gc", timeout=120)
        assert swept.status_code == 200, swept.text
        [resumed] = swept.json()["reindex"]
        assert resumed["state"] == "done" and resumed["target"] == state["reindex"]["target"]
        done = job_of(survivor)
        assert done["serving"] != serving_before and done["reindex"]["files_done"] >= len(tree_files())
        assert done["drift"] == []
    finally:
        assert survivor.stop() == 0
    _, ids, _ = served_points(root)
    assert ids == expected_ids(root / "storage")
