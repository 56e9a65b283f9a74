"""A crash at the pipeline's steps: the retry converges on the state of a clean run.

For each fault point of CRASH_POINTS (every step whose stored state differs) a
service is started with FAULT_INJECTION=<point>:crash:<id> (the worker process
exits at that step while applying bundle <id>), then a fresh service on the same
storage and Qdrant folder receives the client's retry. Afterwards the tree, the
sequence, the journal, the commits of the bundle's git history and the Qdrant
points must equal those of a run without faults, and the raw bundle must still
be stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from core.faults import POINTS
from tests.support.bundles import BundleBuilder, RawMember
from tests.support.index import stored_points
from tests.support.service import ServiceProcess

WORKSPACE = "/work/faulty"
FIRST = b'def alpha():\n    """First."""\n    return 1\n\n\ndef beta():\n    """Second."""\n    return 2\n'
CHANGED = FIRST.replace(b"return 2", b"return 22")
SWAP_X = b"def ex():\n    return 'x'\n"
SWAP_Y = b"def why():\n    return 'y'\n"
BASE_ID = "11111111-1111-4111-8111-111111111111"
FAULTY_ID = "22222222-2222-4222-8222-222222222222"
HISTORY = json.dumps({"version": 1, "commits": [  # the faulty bundle's git history, replayed too
    {"commit_id": "a" * 40, "author_name": "Dev", "authored_date": "Tue Dec 1 07:40:44 2026 +0000",
     "message": "Move b into lib", "files": ["b.py", "lib/b.py"], "diff": "diff --git a/b.py b/lib/b.py\n"},
    {"commit_id": "b" * 40, "author_name": "Dev", "authored_date": "Mon Nov 30 07:40:44 2026 +0000",
     "message": "Drop c.txt", "files": ["c.txt"], "diff": ""}]}).encode()


def bundles() -> list[bytes]:
    base = (BundleBuilder(bundle_id=BASE_ID, collection_name="faults")
            .created("a.py", FIRST).created("b.py", b"def b():\n    return 'b'\n")
            .created("c.txt", b"see\n").created("d/e.py", b"E = 5\n")
            .created("x.py", SWAP_X).created("y.py", SWAP_Y))
    faulty = (BundleBuilder(bundle_id=FAULTY_ID, collection_name="faults")
              .updated("a.py", CHANGED, previous=FIRST)
              .moved("b.py", "lib/b.py", content_hash_of=b"def b():\n    return 'b'\n")
              .deleted("c.txt").created("new.py", b"def new():\n    return 'new'\n")
              .moved("d/e.py", "d2/e.py", b"E = 5\n")
            .moved("x.py", "y.py", content_hash_of=SWAP_X).moved("y.py", "x.py", content_hash_of=SWAP_Y))
    faulty.extra_members.append(RawMember(f"{FAULTY_ID}/metadata/git_history.json", HISTORY))
    return [base.build(), faulty.build()]


def env_for(root: Path, **extra: str) -> dict[str, str]:
    return {"WORK_DIR": str(root / "storage"), "QDRANT_URL": str(root / "qdrant"),
            "LEASE_SECS": "1.5", "CLAIM_WAIT_SECS": "20", **extra}


def upload(service: ServiceProcess, body: bytes) -> requests.Response:
    return service.upload(body, WORKSPACE)


def snapshot(root: Path) -> dict[str, Any]:
    storage = root / "storage"
    ws_dir = next((storage / "workspaces").iterdir())
    tree = {p.relative_to(ws_dir / "tree").as_posix(): p.read_bytes()
            for p in (ws_dir / "tree").rglob("*") if p.is_file()}
    journal = sorted(p.name for p in (ws_dir / "journal").iterdir())
    points = stored_points(str(root / "qdrant"), "faults")
    return {
        "tree": tree,
        "journal": journal,
        "head_sequence": json.loads((ws_dir / "head.json").read_text())["last_sequence"],
        "points": sorted((str(p.id), p.payload["metadata"]["path"] if "metadata" in p.payload
                          else p.payload["commit"]["commit_id"]) for p in points),
        "commits": sorted(p.name for p in (ws_dir / "commits").iterdir()),
        "raw_bundles": sorted(p.name for p in (storage / "bundles" / ws_dir.name).iterdir()),
        "leftover_plans": sorted(p.name for p in (ws_dir / "plans").iterdir())
        if (ws_dir / "plans").exists() else [],
    }


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("clean")
    service = ServiceProcess(env_for(root), root / "service.log").start()
    try:
        for body in bundles():
            assert upload(service, body).status_code == 200
    finally:
        assert service.stop() == 0
    state = snapshot(root)
    assert len(state["commits"]) == 2 and {"a" * 40, "b" * 40} <= {path for _, path in state["points"]}
    return state


# every step at which the stored state differs from its neighbour's (after_claim and
# after_plan are like after_keep but for a plan a retry reuses, after_result like
# after_journal, mid_index like after_index, after_apply like mid_apply's last batch);
# the freezes are in test_lease_fencing and test_fencing
CRASH_POINTS = ("after_keep", "after_index", "mid_batch", "mid_apply", "after_journal", "after_commit")
assert set(CRASH_POINTS) <= set(POINTS)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_each_step_converges_on_the_clean_state(
    point: str, clean: dict[str, Any], tmp_path: Path
) -> None:
    base, faulty = bundles()
    doomed = ServiceProcess(env_for(tmp_path, FAULT_INJECTION=f"{point}:crash:{FAULTY_ID}"),
                            tmp_path / "doomed.log").start()
    assert upload(doomed, base).status_code == 200
    with pytest.raises(requests.ConnectionError):  # the worker died mid-request
        upload(doomed, faulty)
    doomed.kill()  # and its whole instance with it (gunicorn would start a new worker)
    survivor = ServiceProcess(env_for(tmp_path), tmp_path / "survivor.log").start()
    try:
        retry = upload(survivor, faulty)
        assert retry.status_code == 200, retry.text
        assert retry.json()["sequence_number"] == 2
        assert retry.json()["duplicate"] is (point == "after_commit")
        again = upload(survivor, faulty).json()
        assert again["duplicate"] is True and again["sequence_number"] == 2
    finally:
        assert survivor.stop() == 0
    assert snapshot(tmp_path) == clean


def test_storage_unreachable_answers_503_with_retry_after(tmp_path: Path) -> None:
    service = ServiceProcess({"STORAGE_URL": "s3://nowhere/prefix", "S3_ENDPOINT_URL": "http://127.0.0.1:9",
                              "INDEXING_ENABLED": "false", "SCRATCH_DIR": str(tmp_path)},
                             tmp_path / "service.log").start()
    try:
        answer = upload(service, bundles()[0])
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
        assert int(answer.headers["Retry-After"]) >= 1
        assert requests.get(service.url + "/ready", timeout=30).status_code == 503
    finally:
        assert service.stop() == 0
