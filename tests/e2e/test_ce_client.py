"""The existing client's watch-loop bundles over real HTTP, on every storage backend.

The five bundles in `tests/fixtures/ce-client/` are sent exactly as that client
sends them (multipart, `force=False`, its collection name, repo identity and
local path), to a service with a persistent embedded Qdrant folder. They must
leave exactly `expected-tree-after-1-4.json`; the pure rename and the folder
rename embed nothing; and a crash at the pipeline's steps while applying the folder
rename (where its state differs, see CRASHES), followed by the
client's retry on a fresh instance, ends exactly as a run without the crash:
tree, journal, head, index and no left-over plan.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import StorageProbe, storage_for
from tests.support.bundles import BundleBuilder
from tests.support.index import stored_points
from tests.support.service import ServiceProcess

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ce-client"
FIELDS = {"workspace_path": "/work/shop", "collection_name": "shop-8d9001d3", "force": "False",
          "logical_repo_id": "git:5f0c2a9e8b7d6c41", "source_path": "/home/dev/shop"}
FOLDER_RENAME_ID = "b9880ca7-d70c-438b-8968-74ab78583448"


def fixture(number: int) -> bytes:
    return next(FIXTURES.glob(f"ce-{number}-*.tar.gz")).read_bytes()


def send(service: ServiceProcess, body: bytes) -> requests.Response:
    files = {"bundle": ("bundle.tar.gz", body, "application/gzip")}
    return requests.post(service.url + "/api/v1/delta/upload", data=FIELDS, files=files, timeout=120)


def service_env(env: dict[str, str], root: Path, **extra: str) -> dict[str, str]:
    return {**env, "QDRANT_URL": str(root / "qdrant"), "LEASE_SECS": "1.5", "CLAIM_WAIT_SECS": "20", **extra}


def sha1_tree(tree: dict[str, bytes]) -> dict[str, str]:
    return {path: "sha1:" + hashlib.sha1(data).hexdigest() for path, data in tree.items()}


def snapshot(probe: StorageProbe, root: Path, ws: str) -> dict[str, Any]:
    points = stored_points(str(root / "qdrant"), FIELDS["collection_name"])
    return {
        "tree": probe.tree(ws),
        "journal": sorted(probe.keys(f"workspaces/{ws}/journal/")),
        "head_sequence": json.loads(probe.read(f"workspaces/{ws}/head.json"))["last_sequence"],
        "points": sorted((str(p.id), p.payload["metadata"]["path"], p.payload["metadata"]["host_path"])
                         for p in points if p.payload.get("kind") != "commit"),
        "commit_points": sorted(p.payload["commit"]["commit_id"] for p in points
                                if p.payload.get("kind") == "commit"),
        "commits": sorted(probe.keys(f"workspaces/{ws}/commits/")),
        "leftover_plans": sorted(probe.keys(f"workspaces/{ws}/plans/")),
    }


@pytest.mark.parametrize("kind", ["filesystem", "moto", "rgw"])
def test_the_watch_loop_bundles_leave_the_expected_tree(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env, probe = storage_for(kind, request, tmp_path)
    service = ServiceProcess(service_env(env, tmp_path), tmp_path / "service.log").start()
    try:
        answers = [send(service, fixture(n)) for n in range(1, 6)]
        status = service.status(FIELDS["workspace_path"]).json()
    finally:
        assert service.stop() == 0
    assert status["source_path"] == FIELDS["source_path"] and status["last_sequence"] == 5
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    bodies = [a.json() for a in answers]
    assert [b["success"] for b in bodies] == [True] * 5
    assert [b["sequence_number"] for b in bodies] == [1, 2, 3, 4, 5]
    assert [b["processed_operations"]["moved"] for b in bodies] == [0, 1, 3, 0, 0]
    for rename in bodies[1:3]:
        assert rename["indexing"]["chunks_embedded"] == 0
        assert rename["indexing"]["points_repointed"] == rename["processed_operations"]["moved"]
    ws = bodies[0]["workspace_key"]
    expected = json.loads((FIXTURES / "expected-tree-after-1-4.json").read_text())
    state = snapshot(probe, tmp_path, ws)
    assert sha1_tree(state["tree"]) == expected
    assert {path for _, path, _ in state["points"]} == set(expected)
    assert all(host == f"{FIELDS['source_path']}/{path}" for _, path, host in state["points"])
    assert state["leftover_plans"] == []
    # the history-only bundle: its two commits kept and indexed, once each
    assert bodies[4]["git_history"] == {"commits": 2, "stored": 2, "indexed": 2}
    commits = ["1023c3cf331c2a4cb0e2ba8bf4c519c4ca72f5f7", "1e200858d6393434c33e6b7003c32dcd9ed610c9"]
    assert state["commit_points"] == commits
    assert state["commits"] == [f"workspaces/{ws}/commits/{c}.json" for c in commits]


@pytest.fixture(scope="module")
def crash_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def clean_run(crash_backend: str, request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("clean")
    env, probe = storage_for(crash_backend, request, root)
    service = ServiceProcess(service_env(env, root), root / "service.log").start()
    try:
        answers = [send(service, fixture(n)) for n in (1, 2, 3)]
    finally:
        assert service.stop() == 0
    assert [a.status_code for a in answers] == [200] * 3
    return snapshot(probe, root, answers[0].json()["workspace_key"])


# tests/e2e/test_faults.py crashes at the pipeline's steps on the filesystem; here the folder
# rename is crashed where its state differs: kept, indexed (re-pointed), copied half-way,
# copied, journaled, committed; on moto (S3, where a rename is a copy per file) and partly
# on the filesystem
CRASHES = ([("moto", p) for p in ("after_keep", "after_index", "mid_batch", "after_journal", "after_commit")]
           + [("filesystem", "mid_batch")])


@pytest.mark.parametrize(("crash_backend", "point"), CRASHES, indirect=["crash_backend"])
def test_a_crash_while_applying_the_folder_rename_converges_on_the_clean_state(
    point: str, crash_backend: str, clean_run: dict[str, Any], request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    env, probe = storage_for(crash_backend, request, tmp_path)
    doomed = ServiceProcess(service_env(env, tmp_path, FAULT_INJECTION=f"{point}:crash:{FOLDER_RENAME_ID}"),
                            tmp_path / "doomed.log").start()
    first = send(doomed, fixture(1))
    assert first.status_code == 200 and send(doomed, fixture(2)).status_code == 200
    with pytest.raises(requests.ConnectionError):  # the worker died mid-request
        send(doomed, fixture(3))
    doomed.kill()
    survivor = ServiceProcess(service_env(env, tmp_path), tmp_path / "survivor.log").start()
    try:
        retry = send(survivor, fixture(3))
        assert retry.status_code == 200, retry.text
        assert retry.json()["sequence_number"] == 3
        assert retry.json()["processed_operations"]["moved"] == 3
    finally:
        assert survivor.stop() == 0
    assert snapshot(probe, tmp_path, first.json()["workspace_key"]) == clean_run


def client_rename(builder: BundleBuilder, source: str, dest: str, data: bytes) -> BundleBuilder:
    """A rename the way the client's change detection reports it: created, moved, deleted."""
    return builder.created(dest, data).moved(source, dest, data).deleted(source)


def test_every_shape_the_client_sends_combined_in_one_bundle(
    service: ServiceProcess, probe: StorageProbe, workspace: str
) -> None:
    base = {"a.py": b"def a():\n    return 1\n", "b.py": b"B = 2\n", "c.py": b"C = 3\n",
            "d/x.py": b"X = 4\n", "d/y.py": b"Y = 5\n", "e.md": b"# e\n", "f.py": b"F = 6\n"}
    first = BundleBuilder(workspace_path=workspace)
    for path, data in base.items():
        first.created(path, data)
    assert service.upload(first.build(), workspace).status_code == 200
    combined = BundleBuilder(workspace_path=workspace).updated("a.py", b"def a():\n    return 11\n",
                                                               previous=base["a.py"])
    client_rename(combined, "b.py", "b2.py", base["b.py"])
    for name in ("x.py", "y.py"):
        client_rename(combined, f"d/{name}", f"dd/{name}", base[f"d/{name}"])
    combined.created("c2.py", b"C = 33\n").deleted("c.py")  # a rename with an edit
    combined.moved("e.md", "docs/e.md", content_hash_of=base["e.md"])  # a move without content
    combined.deleted("f.py").created("g.py", b"G = 7\n").updated("g.py", b"G = 77\n")
    combined.created("tmp.py", b"scratch\n").deleted("tmp.py")
    answer = service.upload(combined.build(), workspace)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {k: v for k, v in body["processed_operations"].items() if v} == {
        "updated": 1, "moved": 4, "created": 2, "deleted": 2, "skipped": 1}
    assert body["failures"] == [] and body["indexing"]["points_repointed"] == 4
    assert probe.tree(body["workspace_key"]) == {
        "a.py": b"def a():\n    return 11\n", "b2.py": base["b.py"], "c2.py": b"C = 33\n",
        "dd/x.py": base["d/x.py"], "dd/y.py": base["d/y.py"], "docs/e.md": base["e.md"], "g.py": b"G = 77\n"}


FORMERLY_REFUSED = [  # shapes once refused as conflicting, now applied in order onto {"a.py": b"A"}
    ("deleted-then-moved-away", lambda b: b.deleted("a.py").moved("a.py", "b.py"),
     {}, {"deleted": 1, "failed": 1}, [("moved", "b.py")]),
    ("created-then-deleted", lambda b: b.created("n.py", b"N").deleted("n.py"),
     {"a.py": b"A"}, {"skipped": 1}, []),
    ("moved-onto-a-created-path", lambda b: b.created("c.py", b"C").moved("a.py", "c.py"),
     {"c.py": b"A"}, {"moved": 1}, []),
    ("moved-onto-itself", lambda b: b.moved("a.py", "a.py"), {"a.py": b"A"}, {"skipped": 1}, []),
    ("a-file-and-a-folder", lambda b: b.created("d", b"D").created("d/e", b"E"),
     {"a.py": b"A", "d": b"D"}, {"created": 1, "failed": 1}, [("created", "d/e")]),
    ("swapped-by-the-client", lambda b: b.created("t.py", b"T").moved("a.py", "tmp").moved("t.py", "a.py")
     .moved("tmp", "t.py"), {"a.py": b"T", "t.py": b"A"}, {"moved": 1, "updated": 1, "skipped": 1}, []),
]


@pytest.mark.parametrize(("name", "make", "tree", "counts", "failed"), FORMERLY_REFUSED,
                         ids=[case[0] for case in FORMERLY_REFUSED])
def test_shapes_once_refused_apply_in_order(
    name: str, make: Any, tree: dict[str, bytes], counts: dict[str, int], failed: list[tuple[str, str]],
    service: ServiceProcess, probe: StorageProbe, workspace: str,
) -> None:
    assert service.upload(BundleBuilder(workspace_path=workspace).created("a.py", b"A").build(),
                          workspace).status_code == 200
    answer = service.upload(make(BundleBuilder(workspace_path=workspace)).build(), workspace)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {k: v for k, v in body["processed_operations"].items() if v} == counts
    assert [(f["operation"], f["path"]) for f in body["failures"]] == failed
    assert probe.tree(body["workspace_key"]) == tree
