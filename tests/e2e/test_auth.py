"""Authentication, tenant isolation and rate limits, over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from core.auth import hash_key
from tests.support.bundles import BundleBuilder
from tests.support.service import FRAMEWORK, ROOT, ServiceProcess, free_port

KEYS = {"alice": "alice-key-0123456789", "bob": "bob-key-9876543210"}
SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def upload(service: ServiceProcess, body: bytes, headers: dict[str, str] | None = None,
           **fields: str) -> requests.Response:
    data = {"workspace_path": "/work/myrepo", "force": "False", **fields}
    return requests.post(service.url + "/api/v1/delta/upload", data=data, headers=headers or {},
                         files={"bundle": ("b.tar.gz", body, "application/gzip")}, timeout=60)


def status(service: ServiceProcess, headers: dict[str, str]) -> requests.Response:
    return requests.get(service.url + "/api/v1/delta/status", headers=headers,
                        params={"workspace_path": "/work/myrepo"}, timeout=30)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("keyed")
    keys = root / "keys.json"
    keys.write_text(json.dumps({"tenants": {t: [hash_key(k)] for t, k in KEYS.items()}}))
    service = ServiceProcess({"WORK_DIR": str(root / "storage"), "AUTH_MODE": "api_key",
                              "API_KEYS_FILE": str(keys), "INDEXING_ENABLED": "false"},
                             root / "service.log").start()
    yield service
    assert service.stop() == 0
    log = (root / "service.log").read_text()
    assert not any(key in log for key in KEYS.values()), "keys never reach the log"


def test_requests_without_a_valid_key_are_refused(keyed: ServiceProcess) -> None:
    for headers in (bearer("wrong"), {"X-API-Key": "wrong"}):
        answer = status(keyed, headers)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "UNAUTHORIZED"
        assert "wrong" not in answer.text
    anonymous = status(keyed, {})  # the existing clients' credential-less status: no tenant data
    assert anonymous.status_code == 200 and "workspace_key" not in anonymous.json()
    bare = requests.get(keyed.url + "/api/v1/delta/manifest", params={"workspace_path": "/work/myrepo"},
                        timeout=30)
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "UNAUTHORIZED"
    refused = upload(keyed, BundleBuilder().created("a", b"1").build())
    assert refused.status_code == 401
    assert requests.get(keyed.url + "/health", timeout=10).status_code == 200


def test_tenants_never_see_each_others_workspaces(keyed: ServiceProcess) -> None:
    alice = upload(keyed, BundleBuilder().created("who", b"alice").build(), bearer(KEYS["alice"]))
    assert alice.status_code == 200, alice.text
    assert alice.json()["collection_name"] == "alice--myrepo-test"
    assert status(keyed, {"X-API-Key": KEYS["alice"]}).json()["last_sequence"] == 1
    bob_view = status(keyed, bearer(KEYS["bob"])).json()
    assert bob_view["last_sequence"] == 0 and bob_view["workspace_key"] != alice.json()["workspace_key"]
    manifest = requests.get(keyed.url + "/api/v1/delta/manifest", headers=bearer(KEYS["bob"]),
                            params={"workspace_path": "/work/myrepo"}, timeout=30).json()
    assert manifest["files"] == {}
    foreign = requests.get(f"{keyed.url}/api/v1/delta/bundles/{alice.json()['bundle_id']}",
                           headers=bearer(KEYS["bob"]), params={"workspace_path": "/work/myrepo"},
                           timeout=30)
    assert foreign.status_code == 404
    bob = upload(keyed, BundleBuilder().created("who", b"bob").build(), session=KEYS["bob"])
    assert bob.status_code == 200 and bob.json()["sequence_number"] == 1
    assert bob.json()["workspace_key"] != alice.json()["workspace_key"]


def test_upload_url_takes_the_session_from_a_json_body(keyed: ServiceProcess) -> None:
    """Past authentication, the filesystem backend says it cannot presign (501)."""
    url = keyed.url + "/api/v1/delta/upload-url"
    for body, code in (({"session": KEYS["alice"]}, 501), ({"session": "wrong"}, 401), ({}, 401)):
        answer = requests.post(url, json={"workspace_path": "/work/myrepo", **body}, timeout=30)
        assert answer.status_code == code, (body, answer.text)
    form = requests.post(url, data={"workspace_path": "/work/myrepo", "session": KEYS["bob"]}, timeout=30)
    assert form.status_code == 501, form.text


def test_jwt_tokens_map_to_their_tenant_claim(tmp_path: Path) -> None:
    service = ServiceProcess({"WORK_DIR": str(tmp_path), "AUTH_MODE": "jwt", "JWT_SECRET": SECRET,
                              "JWT_AUDIENCE": "delta-upload", "INDEXING_ENABLED": "false"},
                             tmp_path / "service.log").start()
    try:
        def token(**claims: object) -> str:
            base = {"tenant": "carol", "aud": "delta-upload", "exp": int(time.time()) + 300}
            return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")

        ok = upload(service, BundleBuilder().created("a", b"1").build(), bearer(token()))
        assert ok.status_code == 200 and ok.json()["collection_name"].startswith("carol--")
        for bad in (token(exp=int(time.time()) - 10), token(aud="someone-else"),
                    token(tenant="../x"), jwt.encode({"tenant": "carol", "aud": "delta-upload",
                                                      "exp": int(time.time()) + 300},
                                                     "another-secret-that-is-long-enough-too",
                                                     algorithm="HS256")):
            answer = status(service, bearer(bad))
            assert answer.status_code == 401, answer.text
    finally:
        assert service.stop() == 0


def test_rate_limits_answer_429_with_retry_after(tmp_path: Path) -> None:
    service = ServiceProcess({"WORK_DIR": str(tmp_path), "INDEXING_ENABLED": "false",
                              "RATE_LIMIT_REQUESTS_PER_MIN": "3", "RATE_LIMIT_MB_PER_MIN": "1"},
                             tmp_path / "service.log").start()
    try:
        codes = [status(service, {}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = status(service, {})
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"]["code"] == "RATE_LIMITED"
    finally:
        assert service.stop() == 0


def test_bytes_per_minute_are_limited(tmp_path: Path) -> None:
    service = ServiceProcess({"WORK_DIR": str(tmp_path), "INDEXING_ENABLED": "false",
                              "RATE_LIMIT_MB_PER_MIN": "1"}, tmp_path / "service.log").start()
    try:
        big = BundleBuilder().created("noise.bin", os.urandom(600_000)).build()
        assert upload(service, big).status_code == 200
        second = upload(service, BundleBuilder().created("more.bin", os.urandom(600_000)).build())
        assert second.status_code == 429 and "Retry-After" in second.headers
    finally:
        assert service.stop() == 0


def test_a_bad_key_file_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text('{"tenants": {"alice": ["plain-text-key"]}}')
    done = subprocess.run([str(FRAMEWORK), "--source", str(ROOT / "functions/main.py"), "--target",
                           "service", "--port", str(free_port())],
                          env={**os.environ, "WORK_DIR": str(tmp_path), "AUTH_MODE": "api_key",
                               "API_KEYS_FILE": str(tmp_path / "keys.json")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "API_KEYS_FILE" in done.stderr + done.stdout
    assert "plain-text-key" not in done.stderr + done.stdout


def test_sessions_work_alongside_api_keys(keyed: ServiceProcess) -> None:
    """AUTH_MODE=api_key accepts sessions too: a user of the default tenant, next to Alice's key."""
    assert requests.get(keyed.url + "/auth/status", timeout=30).json()["enabled"] is True
    body = {"username": "carol", "password": "a long enough password"}
    created = requests.post(keyed.url + "/auth/users", json=body, timeout=60)
    assert created.status_code == 200, created.text
    session = requests.post(keyed.url + "/auth/login/password", json=body, timeout=60).json()["session_id"]
    mine = upload(keyed, BundleBuilder().created("who", b"carol").build(), session=session)
    assert mine.status_code == 200 and mine.json()["collection_name"] == "default--myrepo-test"
    assert status(keyed, {"X-API-Key": KEYS["alice"]}).json()["last_sequence"] >= 1
    assert status(keyed, bearer(KEYS["alice"])).json()["workspace_key"] != mine.json()["workspace_key"]
    assert status(keyed, bearer(session)).json()["workspace_key"] == mine.json()["workspace_key"]
