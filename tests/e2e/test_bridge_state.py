"""`GET /bridge/state` over real HTTP: what the MCP bridge learns at start-up."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import requests

from core.auth import hash_key
from tests.support.bundles import BundleBuilder
from tests.support.service import ServiceProcess

KEYS = {"alice": "alice-bridge-key-0123", "bob": "bob-bridge-key-4567"}


def bridge(service: ServiceProcess, headers: dict[str, str] | None = None,
           **params: str) -> requests.Response:
    return requests.get(service.url + "/bridge/state", params=params, headers=headers or {}, timeout=30)


def test_a_workspace_and_its_collection_by_path_by_name_and_by_collection(tmp_path: Path) -> None:
    service = ServiceProcess({"WORK_DIR": str(tmp_path / "storage")}, tmp_path / "service.log").start()
    try:
        unknown = bridge(service, workspace="/work/nothing-here", repo_name="nothing-here")
        assert unknown.status_code == 404 and unknown.json()["success"] is False
        assert unknown.json()["error"]["code"] == "NOT_FOUND"
        assert bridge(service, collection="no-such-collection").status_code == 404
        assert bridge(service).status_code == 400
        bundle = BundleBuilder(collection_name="bridged").created("app.py", b"def main():\n    pass\n")
        uploaded = service.upload(bundle.build(), "/work/myrepo", logical_repo_id="git:0123456789abcdef")
        assert uploaded.status_code == 200, uploaded.text
        key = uploaded.json()["workspace_key"]
        expected = {"workspace_path": "/work/myrepo", "repo_name": "myrepo",
                    "active_collection": "bridged", "serving_collection": "bridged",
                    "previous_collection": None, "indexing_status": "idle", "staging": False,
                    "workspace_key": key, "last_sequence": 1}
        by_path = bridge(service, workspace="/work/myrepo", repo_name="myrepo")
        physical = by_path.json()["physical_collection"]  # behind the alias "bridged"
        assert physical.startswith("bridged~")
        expected.update({"physical_collection": physical, "staging_collection": None})
        assert by_path.status_code == 200 and by_path.json() == expected  # followed the repo id's alias
        assert bridge(service, repo_name="myrepo").json() == expected
        by_collection = bridge(service, collection="bridged")
        assert by_collection.status_code == 200
        assert by_collection.json() == {**expected, "workspace_path": None, "repo_name": None,
                                        "workspace_key": None, "last_sequence": None}
        assert bridge(service, collection="../etc").status_code == 400
        assert requests.post(service.url + "/bridge/state", timeout=10).status_code == 405
        assert requests.head(service.url + "/bridge/state", params={"repo_name": "myrepo"},
                             timeout=10).status_code == 200
    finally:
        assert service.stop() == 0


def test_a_bundle_claimed_and_not_committed_reads_as_indexing(tmp_path: Path) -> None:
    env = {"WORK_DIR": str(tmp_path / "storage"), "INDEXING_ENABLED": "false", "LEASE_SECS": "300"}
    bundle = BundleBuilder().created("a.py", b"a = 1\n")
    crashing = ServiceProcess({**env, "FAULT_INJECTION": f"after_claim:crash:{bundle.bundle_id}"},
                              tmp_path / "crash.log").start()
    try:  # the instance dies after the claim, as a killed one would
        with contextlib.suppress(requests.ConnectionError):
            crashing.upload(bundle.build(), "/work/halfway")
    finally:
        crashing.stop()
    service = ServiceProcess(env, tmp_path / "service.log").start()
    try:
        answer = bridge(service, workspace="/work/halfway")
        assert answer.status_code == 200, answer.text
        assert answer.json()["indexing_status"] == "indexing"
        assert answer.json()["last_sequence"] == 0
        assert answer.json()["active_collection"] == answer.json()["serving_collection"]
        # indexing is off: a collection alone names nothing this service serves
        assert bridge(service, collection="myrepo-test").status_code == 404
    finally:
        assert service.stop() == 0


def test_authenticated_like_status_and_scoped_to_the_tenant(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"tenants": {t: [hash_key(k)] for t, k in KEYS.items()}}))
    service = ServiceProcess({"WORK_DIR": str(tmp_path / "storage"), "AUTH_MODE": "api_key",
                              "API_KEYS_FILE": str(keys)}, tmp_path / "service.log").start()
    alice = {"Authorization": f"Bearer {KEYS['alice']}"}
    try:
        bundle = BundleBuilder(collection_name="mine").created("a.py", b"a = 1\n").build()
        assert service.upload(bundle, "/work/myrepo", session=KEYS["alice"]).status_code == 200
        assert bridge(service, repo_name="myrepo").status_code == 401
        assert bridge(service, {"X-API-Key": "wrong"}, repo_name="myrepo").status_code == 401
        mine = bridge(service, alice, repo_name="myrepo")
        assert mine.status_code == 200 and mine.json()["serving_collection"] == "alice--mine"
        assert bridge(service, alice, collection="mine").json()["serving_collection"] == "alice--mine"
        bob = {"X-API-Key": KEYS["bob"]}
        assert bridge(service, bob, repo_name="myrepo").status_code == 404, "alice's is not bob's"
        assert bridge(service, bob, collection="mine").status_code == 404
        assert bridge(service, {}, session=KEYS["bob"], collection="mine").status_code == 404
    finally:
        assert service.stop() == 0
