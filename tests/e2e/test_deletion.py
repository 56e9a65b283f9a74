"""Deleting a workspace or a collection over real HTTP: wholly, idempotently, per tenant,
and safely against an upload racing it.

A real service (filesystem and moto) gets bundles with git history, so a workspace
has a tree, journal, results, raw bundles, commit records, code and commit points,
a tenant record and an alias. After `DELETE /api/v1/delta/workspace` no key of it
is left, other workspaces are untouched, its points are gone from search, and a new
upload starts it at sequence 1. Racing an upload, the workspace ends either wholly
gone or exactly as one clean upload leaves it, never a mix. A deletion interrupted
by a crash leaves a tombstone (uploads 409 WORKSPACE_DELETING) that a retry on a
fresh instance takes over and finishes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from core.auth import hash_key
from core.keys import workspace_key
from tests.e2e.conftest import StorageProbe, storage_for
from tests.e2e.test_lease_fencing import stopped_worker
from tests.support.bundles import BundleBuilder, RawMember
from tests.support.service import ServiceProcess

COLLECTION = "deletions"
FILES = {"src/cart.py": b"def cart_total(items):\n    return sum(i.price for i in items)\n",
         "src/coupon.py": b"def frobnicate_coupon(total, pct):\n    return total * (1 - pct)\n",
         "README.md": b"# Shop\n\nA shop that sells zygomorphic flowers.\n"}
COMMIT = "c0ffee" + "0" * 34
REBUILT = "deletions-rebuilt"


def history(commit_id: str = COMMIT) -> bytes:
    return json.dumps({"version": 1, "commits": [
        {"commit_id": commit_id, "author_name": "Dev", "authored_date": "Tue Dec 1 07:40:44 2026 +0000",
         "message": "Add the quixotic cart", "files": ["src/cart.py"], "diff": "diff --git a/src/cart.py\n"}]}
    ).encode()


def first_bundle(collection: str = COLLECTION) -> bytes:
    builder = BundleBuilder(collection_name=collection)
    for path, data in FILES.items():
        builder.created(path, data)
    builder.extra_members.append(RawMember(f"{builder.bundle_id}/metadata/git_history.json", history()))
    return builder.build()


def second_bundle() -> bytes:
    return (BundleBuilder(collection_name=COLLECTION)
            .updated("src/cart.py", FILES["src/cart.py"] + b"\n\nTAX = 0.2\n", previous=FILES["src/cart.py"])
            .deleted("README.md").build())


def delete(service: ServiceProcess, path: str, headers: dict[str, str] | None = None,
           **params: str) -> requests.Response:
    return requests.delete(service.url + "/api/v1/delta/workspace", timeout=60, headers=headers or {},
                           params={"workspace_path": path, **params})


def search(service: ServiceProcess, query: str, kind: str = "code",
           headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    answer = requests.get(service.url + "/api/v1/search", timeout=30, headers=headers or {},
                          params={"query": query, "collection_name": COLLECTION, "kind": kind, "limit": "50"})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["hits"])


def searched_workspaces(service: ServiceProcess) -> set[str]:
    found = search(service, "cart total coupon frobnicate shop zygomorphic flowers")
    found += search(service, "quixotic cart", kind="commits")
    return {hit["workspace_key"] for hit in found}


def keys_of(probe: StorageProbe, ws: str) -> set[str]:
    """Every stored key that belongs to workspace `ws` (its tenant record included)."""
    return {key for key in probe.keys("") if f"/{ws}/" in key or key.endswith(f"/{ws}.json")}


def applied(service: ServiceProcess, body: bytes, path: str, timeout: float = 60, **fields: Any
            ) -> requests.Response:
    """The client's retry loop: a 409 WORKSPACE_DELETING or a 503 is retried after Retry-After."""
    deadline = time.monotonic() + timeout
    while True:
        answer = service.upload(body, path, **fields)
        retry = answer.status_code == 503 or (
            answer.status_code == 409 and answer.json()["error"]["code"] == "WORKSPACE_DELETING")
        if not retry or time.monotonic() > deadline:
            return answer
        time.sleep(min(0.2, float(answer.headers.get("Retry-After", "1"))))


@pytest.fixture(scope="module")
def indexed(backend: tuple[dict[str, str], StorageProbe], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[ServiceProcess, StorageProbe]]:
    env, probe = backend
    log = tmp_path_factory.mktemp("deletion-logs") / "service.log"
    service = ServiceProcess({**env, "EMBEDDING_MODEL": "none", "CLAIM_WAIT_SECS": "20", "LEASE_SECS": "3",
                              # a reindex of REBUILT waits with every workspace done (see below)
                              "FAULT_INJECTION": f"reindex_before_switch:sleep=2:{REBUILT}"}, log).start()
    yield service, probe
    assert service.stop() == 0


def audits(service: ServiceProcess) -> list[dict[str, Any]]:
    """The audit lines the service logged (`core.deletion`)."""
    return [json.loads(line) for line in service.log_path.read_text().splitlines()
            if line.startswith("{") and '"audit"' in line]


def test_a_workspace_is_deleted_wholly_and_nothing_else(indexed: tuple[ServiceProcess, StorageProbe],
                                                        workspace: str) -> None:
    service, probe = indexed
    other = workspace + "-other"
    for path in (workspace, other):
        assert service.upload(first_bundle(), path).status_code == 200
    assert service.upload(second_bundle(), workspace).status_code == 200
    ws = service.status(workspace).json()["workspace_key"]
    kept = service.status(other).json()["workspace_key"]
    mine, theirs = keys_of(probe, ws), keys_of(probe, kept)
    assert {f"workspaces/{ws}/commits/{COMMIT}.json", f"workspaces/{ws}/journal/000000000002.json"} <= mine
    assert len([k for k in mine if k.startswith(f"bundles/{ws}/")]) == 2
    assert {ws, kept} <= searched_workspaces(service)
    other_status = service.status(other).json()

    answer = delete(service, workspace)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["deleted"] is True and body["workspace_key"] == ws and body["resumed"] is False
    assert body["objects_removed"] == len(mine) + 1  # and the path's alias
    assert body["points_removed"] >= 3  # code chunks of two files and the commit
    assert keys_of(probe, ws) == set()
    assert keys_of(probe, kept) == theirs
    assert service.status(other).json() == other_status
    assert ws not in searched_workspaces(service) and kept in searched_workspaces(service)
    gone = service.status(workspace).json()
    assert (gone["last_sequence"], gone["indexed_points"], gone["status"]) == (0, 0, "ready")
    assert service.manifest(workspace).json()["files"] == {}

    [audit] = [a for a in audits(service) if a.get("workspace") == ws]
    assert (audit["severity"], audit["audit"], audit["tenant"], audit["workspace_path"]) == (
        "INFO", "delete_workspace", "", workspace)
    assert (audit["objects_removed"], audit["points_removed"]) == (
        body["objects_removed"], body["points_removed"])
    again = delete(service, workspace)  # idempotent
    assert again.status_code == 200
    assert (again.json()["deleted"], again.json()["objects_removed"], again.json()["points_removed"]) == (
        False, 0, 0)
    anew = service.upload(second_bundle(), workspace)  # an update of a workspace that is gone
    assert anew.status_code == 200 and anew.json()["sequence_number"] == 1
    assert service.manifest(workspace).json()["files"].keys() == {"src/cart.py"}
    assert delete(service, other).json()["deleted"] is True


def test_a_repo_id_names_its_own_workspace_and_a_path_its_latest(
        indexed: tuple[ServiceProcess, StorageProbe], workspace: str) -> None:
    service, probe = indexed
    assert service.upload(first_bundle(), workspace).status_code == 200
    by_path = service.status(workspace).json()["workspace_key"]
    assert service.upload(first_bundle(), workspace, logical_repo_id="repo-7").status_code == 200
    by_repo = service.status(workspace, logical_repo_id="repo-7").json()["workspace_key"]
    assert by_repo != by_path
    refused = delete(service, workspace, logical_repo_id="path:x")
    assert refused.status_code == 400
    assert delete(service, workspace).json()["workspace_key"] == by_repo  # the path's latest upload
    assert keys_of(probe, by_repo) == set() and keys_of(probe, by_path)
    assert delete(service, workspace).json()["workspace_key"] == by_path  # its alias went with it
    assert keys_of(probe, by_path) == set()
    method = requests.get(service.url + "/api/v1/delta/workspace", params={"workspace_path": workspace},
                          timeout=10)
    assert method.status_code == 405 and method.headers["Allow"] == "DELETE"


def test_a_collection_is_deleted_with_its_workspaces(indexed: tuple[ServiceProcess, StorageProbe],
                                                     workspace: str) -> None:
    service, probe = indexed
    paths = [workspace + "-a", workspace + "-b"]
    for path in paths:
        assert service.upload(first_bundle("doomed"), path).status_code == 200
    assert service.upload(first_bundle(), workspace + "-kept").status_code == 200
    keys = [service.status(p).json()["workspace_key"] for p in paths]
    kept = service.status(workspace + "-kept").json()["workspace_key"]
    theirs = keys_of(probe, kept)
    answer = requests.delete(service.url + "/api/v1/delta/collection", params={"collection_name": "doomed"},
                             timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["deleted"] is True and body["collection_dropped"] is True
    assert sorted(w["workspace_key"] for w in body["workspaces"]) == sorted(keys)
    assert all(keys_of(probe, ws) == set() for ws in keys) and keys_of(probe, kept) == theirs
    gone = requests.get(service.url + "/api/v1/search", timeout=30,
                        params={"query": "cart", "collection_name": "doomed"})
    assert gone.status_code == 404
    again = requests.delete(service.url + "/api/v1/delta/collection", params={"collection_name": "doomed"},
                            timeout=60).json()
    assert (again["deleted"], again["workspaces"], again["objects_removed"]) == (False, [], 0)
    bad = requests.delete(service.url + "/api/v1/delta/collection", params={"collection_name": "../x"},
                          timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_COLLECTION"
    assert service.upload(first_bundle("doomed"), paths[0]).json()["sequence_number"] == 1  # made anew
    assert kept in searched_workspaces(service)


def test_a_workspace_deleted_during_a_reindex_stays_out_of_the_rebuilt_collection(
        indexed: tuple[ServiceProcess, StorageProbe], workspace: str) -> None:
    """The reindex has done every workspace and is about to switch when one is deleted:
    its points go from the collection being built too, so the switch brings none back."""
    service, probe = indexed
    if probe.root is None:
        pytest.skip("the reindex's storage side is the same on S3; once is enough here")
    doomed, kept = workspace + "-doomed", workspace + "-kept"
    for path in (doomed, kept):
        assert service.upload(first_bundle(REBUILT), path).status_code == 200
    ws = service.status(doomed).json()["workspace_key"]
    admin = service.url + "/api/v1/admin/reindex"
    assert requests.post(admin, json={"collection_name": REBUILT}, timeout=30).status_code == 202

    def job() -> dict[str, Any]:
        states = requests.get(admin, timeout=30).json()["collections"]
        return dict(next(c for c in states if c["collection_name"] == REBUILT)["reindex"] or {})

    deadline = time.monotonic() + 30
    while job().get("workspaces_done") != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job()["state"] == "building", job()  # every workspace done: sleeping before the switch
    answer = delete(service, doomed)
    assert answer.status_code == 200 and answer.json()["points_removed"] >= 2 * 3, answer.text
    while job().get("state") != "done" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job()["state"] == "done"
    params = {"collection_name": REBUILT, "limit": "50"}
    found = requests.get(service.url + "/api/v1/search", timeout=30, params={
        **params, "query": "cart total coupon frobnicate shop zygomorphic flowers"}).json()["hits"]
    found += requests.get(service.url + "/api/v1/search", timeout=30, params={
        **params, "query": "quixotic cart", "kind": "commits"}).json()["hits"]
    assert {hit["workspace_key"] for hit in found} == {service.status(kept).json()["workspace_key"]}
    assert keys_of(probe, ws) == set()


def test_a_delete_racing_an_upload_leaves_all_or_nothing(indexed: tuple[ServiceProcess, StorageProbe],
                                                         workspace: str) -> None:
    """Each round: a workspace at sequence 1, then an update of it and two deletes at once,
    each starting at a random offset; the client retries a 409 or 503. Afterwards the
    workspace is wholly gone, or exactly as the update alone leaves a fresh workspace
    (sequence 1, its one file, nothing of the first bundle: no commit, raw bundle, file)."""
    service, probe = indexed
    update = second_bundle()
    assert service.upload(update, workspace + "-reference").status_code == 200
    reference = service.status(workspace + "-reference").json()
    reference_tree = probe.tree(reference["workspace_key"])
    outcomes = []
    shuffle = random.Random(17)
    for round_ in range(4):
        path = f"{workspace}-{round_}"
        assert service.upload(first_bundle(), path).status_code == 200
        answers: dict[str, requests.Response] = {}

        def upload_it(pause: float, answers: dict[str, requests.Response] = answers,
                      path: str = path) -> None:
            time.sleep(pause)
            answers["upload"] = applied(service, update, path)

        def delete_it(name: str, pause: float, answers: dict[str, requests.Response] = answers,
                      path: str = path) -> None:
            time.sleep(pause)
            answers[name] = delete(service, path)

        threads = [threading.Thread(target=upload_it, args=(shuffle.uniform(0, 0.1),))]
        threads += [threading.Thread(target=delete_it, args=(f"delete{n}", shuffle.uniform(0, 0.1)))
                    for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers["upload"].status_code == 200, answers["upload"].text
        assert all(answers[f"delete{n}"].status_code == 200 for n in range(2)), answers
        assert any(answers[f"delete{n}"].json()["deleted"] for n in range(2))
        ws = answers["upload"].json()["workspace_key"]
        status = service.status(path).json()
        keys = keys_of(probe, ws)
        if status["last_sequence"] == 0:
            outcomes.append("gone")
            assert keys == set(), keys
            assert status["indexed_points"] == 0 and ws not in searched_workspaces(service)
            continue
        outcomes.append("present")
        assert answers["upload"].json()["sequence_number"] == 1
        assert (status["last_sequence"], status["status"], status["pending_bundle"]) == (1, "ready", None)
        assert status["indexed_points"] == reference["indexed_points"]
        assert probe.tree(ws) == reference_tree
        bundle_id = answers["upload"].json()["bundle_id"]
        assert {k for k in keys if "/tree/" not in k} == {
            f"workspaces/{ws}/head.json", f"workspaces/{ws}/journal/000000000001.json",
            f"workspaces/{ws}/results/{bundle_id}.json", f"bundles/{ws}/{bundle_id}.tar.gz",
            next(k for k in keys if k.startswith("tenants/"))}
        assert ws not in {hit["workspace_key"] for hit in search(service, "quixotic cart", kind="commits")}
        assert delete(service, path).json()["deleted"] is True
    print("outcomes", outcomes)


def test_tenants_delete_only_their_own(tmp_path: Path) -> None:
    keys = {"alice": "alice-delete-key-0123", "bob": "bob-delete-key-4567"}
    key_file = tmp_path / "keys.json"
    key_file.write_text(json.dumps({"tenants": {t: [hash_key(k)] for t, k in keys.items()}}))
    service = ServiceProcess({"WORK_DIR": str(tmp_path / "storage"), "AUTH_MODE": "api_key",
                              "API_KEYS_FILE": str(key_file), "INDEXING_ENABLED": "false"},
                             tmp_path / "service.log").start()
    alice, bob = ({"Authorization": f"Bearer {keys[t]}"} for t in ("alice", "bob"))
    try:
        assert service.upload(first_bundle(), "/work/shared", session=keys["alice"]).status_code == 200
        assert service.upload(first_bundle(), "/work/shared", session=keys["bob"]).status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = delete(service, "/work/shared", headers)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "UNAUTHORIZED"
            assert requests.delete(service.url + "/api/v1/delta/collection", headers=headers, timeout=10,
                                   params={"collection_name": COLLECTION}).status_code == 401
        answer = delete(service, "/work/shared", bob)
        assert answer.status_code == 200 and answer.json()["deleted"] is True
        assert service.status("/work/shared", session=keys["alice"]).json()["last_sequence"] == 1
        assert service.status("/work/shared", session=keys["bob"]).json()["last_sequence"] == 0
        collection = requests.delete(service.url + "/api/v1/delta/collection", headers=bob, timeout=30,
                                     params={"collection_name": COLLECTION}).json()
        assert collection["deleted"] is False  # bob's only workspace there is gone already
        assert service.status("/work/shared", session=keys["alice"]).json()["last_sequence"] == 1
        assert delete(service, "/work/shared", alice).json()["deleted"] is True
    finally:
        assert service.stop() == 0


@pytest.mark.parametrize("kind", ["filesystem"])
def test_an_interrupted_deletion_is_finished_by_a_retry(kind: str, request: pytest.FixtureRequest,
                                                        tmp_path: Path) -> None:
    """The deleting instance dies after the points and the first batch of objects; the
    tombstone stays, uploads are refused, and a DELETE on a fresh instance finishes it."""
    env, probe = storage_for(kind, request, tmp_path)
    env = {**env, "QDRANT_URL": str(tmp_path / "qdrant"), "EMBEDDING_MODEL": "none", "LEASE_SECS": "1.5",
           "CLAIM_WAIT_SECS": "10"}
    ws = workspace_key("", "/work/doomed", None)
    crashing = ServiceProcess({**env, "FAULT_INJECTION": f"mid_delete:crash:{ws}"}, tmp_path / "crash.log")
    crashing.start()
    try:
        assert crashing.upload(first_bundle(), "/work/doomed").status_code == 200
        assert crashing.upload(second_bundle(), "/work/doomed").json()["workspace_key"] == ws
        before = keys_of(probe, ws)
        with pytest.raises(requests.ConnectionError):
            delete(crashing, "/work/doomed")
    finally:
        crashing.stop()
    left = keys_of(probe, ws)
    assert f"workspaces/{ws}/head.json" in left and left < before
    retry = ServiceProcess(env, tmp_path / "retry.log").start()
    try:
        assert retry.status("/work/doomed").json()["status"] == "deleting"
        refused = retry.upload(first_bundle(), "/work/doomed")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "WORKSPACE_DELETING"
        assert int(refused.headers["Retry-After"]) >= 1
        assert retry.manifest("/work/doomed").json()["files"] == {}
        finished = delete(retry, "/work/doomed")
        assert finished.status_code == 200, finished.text
        assert finished.json()["deleted"] is True and finished.json()["resumed"] is True
        assert keys_of(probe, ws) == set()
        assert retry.status("/work/doomed").json()["indexed_points"] == 0
        assert retry.upload(first_bundle(), "/work/doomed").json()["sequence_number"] == 1
    finally:
        assert retry.stop() == 0


@pytest.mark.parametrize("kind", ["filesystem"])
def test_a_live_claim_holds_a_delete_off_and_a_frozen_one_is_taken_over(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A freezes (SIGSTOP) right after planning an upload. While A's lease is live, a DELETE
    on B waits CLAIM_WAIT_SECS and answers 503 WORKSPACE_BUSY; once it expired, B's retry
    takes the head and deletes the workspace. A, resumed, writes nothing: its fence sees
    it no longer owns the head (503 LEASE_LOST), and the workspace stays wholly gone."""
    env, probe = storage_for(kind, request, tmp_path)
    bundle_id = "f0f0f0f0-0000-4000-8000-000000000001"
    frozen = BundleBuilder(bundle_id=bundle_id, collection_name=COLLECTION)
    for n in range(40):
        frozen.created(f"src/m{n}.py", f"M = {n}\n".encode())
    shared = {**env, "INDEXING_ENABLED": "false", "LEASE_SECS": "1.5", "CLAIM_WAIT_SECS": "0.5"}
    a = ServiceProcess({**shared, "FAULT_INJECTION": f"after_plan:pause:{bundle_id}"}, tmp_path / "a.log")
    b = ServiceProcess(shared, tmp_path / "b.log")
    a.start(), b.start()
    try:
        assert b.upload(first_bundle(), "/work/frozen").status_code == 200
        ws = b.status("/work/frozen").json()["workspace_key"]
        pending: dict[str, requests.Response] = {}
        upload = threading.Thread(target=lambda: pending.update(a=a.upload(frozen.build(), "/work/frozen")))
        upload.start()
        worker = stopped_worker(a)
        busy = delete(b, "/work/frozen")
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "WORKSPACE_BUSY", busy.text
        assert int(busy.headers["Retry-After"]) >= 1
        deadline = time.monotonic() + 20
        while (answer := delete(b, "/work/frozen")).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer.status_code == 200 and answer.json()["deleted"] is True, answer.text
        assert keys_of(probe, ws) == set()
        os.kill(worker, signal.SIGCONT)
        upload.join(30)
        assert pending["a"].status_code == 503 and pending["a"].json()["error"]["code"] == "LEASE_LOST"
        time.sleep(0.2)
        assert keys_of(probe, ws) == set()
        assert b.status("/work/frozen").json()["last_sequence"] == 0
    finally:
        for service in (a, b):
            service.stop()
