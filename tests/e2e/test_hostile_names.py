"""Issue 13, names: what a hostile tester found, replayed over real HTTP against the real service.

Tenant ids and collection names that could meet on one stored name, patterns that let
a final newline through, two spellings of one workspace path, JWTs verified with an
algorithm their key was not published for or with a string `exp`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from core.auth import hash_key
from tests.support.bundles import BundleBuilder
from tests.support.service import FRAMEWORK, ROOT, ServiceProcess, free_port

KEYS = {"bob": "bob-names-key-0123456789", "alice": "alice-names-key-0123456789"}
SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def auth(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def bridge(service: ServiceProcess, headers: dict[str, str], **params: str) -> requests.Response:
    return requests.get(service.url + "/bridge/state", params=params, headers=headers, timeout=30)


def upload(service: ServiceProcess, bundle: bytes, headers: dict[str, str],
           path: str = "/work/myrepo", **fields: str) -> requests.Response:
    data = {"workspace_path": path, "force": "False", **fields}
    return requests.post(service.url + "/api/v1/delta/upload", data=data, headers=headers, timeout=60,
                         files={"bundle": ("b.tar.gz", bundle, "application/gzip")})


def status(service: ServiceProcess, headers: dict[str, str], path: str = "/work/myrepo",
           **params: str) -> requests.Response:
    return requests.get(service.url + "/api/v1/delta/status", headers=headers, timeout=30,
                        params={"workspace_path": path, **params})


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("names")
    keys = root / "keys.json"
    keys.write_text(json.dumps({"tenants": {t: [hash_key(k)] for t, k in KEYS.items()}}))
    service = ServiceProcess({"WORK_DIR": str(root / "storage"), "AUTH_MODE": "api_key",
                              "API_KEYS_FILE": str(keys), "EMBEDDING_MODEL": "none"},
                             root / "service.log").start()
    yield service
    assert service.stop() == 0


@pytest.mark.parametrize("tenant", ["bob--ci", "bob-", "alice\n"])
def test_a_tenant_id_that_could_share_stored_names_stops_start_up(tmp_path: Path, tenant: str) -> None:
    (tmp_path / "keys.json").write_text(json.dumps({"tenants": {tenant: [hash_key("k" * 20)]}}))
    done = subprocess.run([str(FRAMEWORK), "--source", str(ROOT / "functions/main.py"), "--target",
                           "service", "--port", str(free_port())],
                          env={**os.environ, "WORK_DIR": str(tmp_path), "AUTH_MODE": "api_key",
                               "QDRANT_URL": ":memory:", "API_KEYS_FILE": str(tmp_path / "keys.json")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "is not a tenant id" in done.stderr + done.stdout


def test_each_tenant_sees_only_its_own_collection(keyed: ServiceProcess) -> None:
    bundle = BundleBuilder(collection_name="ci--x").created("bob.py", b"def bob():\n    pass\n")
    bob = upload(keyed, bundle.build(), auth("bob"))
    assert bob.status_code == 200, bob.text
    assert bob.json()["collection_name"] == "bob--ci--x"
    assert bridge(keyed, auth("bob"), collection="ci--x").json()["indexing_status"] == "idle"
    assert bridge(keyed, auth("alice"), collection="ci--x").status_code == 404
    # Alice names Bob's stored name outright: it is hers, alice--bob--ci--x, and empty
    assert bridge(keyed, auth("alice"), collection="bob--ci--x").status_code == 404


@pytest.mark.parametrize("name", ["../x", "a/b", "a\0b", "x\n", ".", "-y", "a" * 190])
def test_a_collection_name_that_is_none_is_a_permanent_400(keyed: ServiceProcess, name: str) -> None:
    body = BundleBuilder().created("a.py", b"a = 1\n").build()
    by_field = upload(keyed, body, auth("bob"), collection_name=name)
    assert by_field.status_code == 400, by_field.text  # was 503 INDEX_UNAVAILABLE: retried forever
    assert by_field.json()["error"]["code"] == "INVALID_COLLECTION" and "retry_after" not in by_field.json()
    by_manifest = upload(keyed, BundleBuilder(collection_name=name).created("a.py", b"a = 1\n").build(),
                         auth("bob"))
    assert by_manifest.status_code == 400 and by_manifest.json()["error"]["code"] == "INVALID_COLLECTION"
    answer = bridge(keyed, auth("bob"), collection=name)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "INVALID_COLLECTION"


def test_a_bundle_id_with_a_final_newline_is_refused(keyed: ServiceProcess) -> None:
    bundle = BundleBuilder(bundle_id="abc\n", leading_folder=False).created("a.py", b"1")
    answer = upload(keyed, bundle.build(), auth("bob"))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "INVALID_BUNDLE"


def test_two_spellings_of_one_path_are_one_workspace(keyed: ServiceProcess) -> None:
    nfc, nfd = "/work/caf\u00e9", unicodedata.normalize("NFD", "/work/caf\u00e9")
    first = upload(keyed, BundleBuilder().created("a.py", b"1").build(), auth("alice"), path=nfd)
    assert first.status_code == 200, first.text
    assert status(keyed, auth("alice"), nfc).json()["last_sequence"] == 1
    dotted = upload(keyed, BundleBuilder().created("b.py", b"2").build(), auth("alice"),
                    path="/work/tmp/../shop//")
    assert dotted.status_code == 200, dotted.text
    same = status(keyed, auth("alice"), "/work/shop").json()
    assert same["last_sequence"] == 1 and same["workspace_key"] == dotted.json()["workspace_key"]
    spoof = status(keyed, auth("alice"), "/work/x", logical_repo_id="path:/work/shop")
    assert spoof.status_code == 400  # a repo id spelt as a path identity would reach /work/shop


def hs256(**claims: object) -> str:
    base = {"tenant": "carol", "exp": int(time.time()) + 300}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


def test_jwt_tenants_and_times_are_checked_whole(tmp_path: Path) -> None:
    service = ServiceProcess({"WORK_DIR": str(tmp_path), "AUTH_MODE": "jwt", "JWT_SECRET": SECRET,
                              "INDEXING_ENABLED": "false"}, tmp_path / "service.log").start()
    try:
        assert status(service, {"Authorization": f"Bearer {hs256()}"}).status_code == 200
        for bad in (hs256(tenant="carol\n"), hs256(tenant="bob--ci"), hs256(tenant="bob-"),
                    hs256(exp=str(int(time.time()) + 300)), hs256(exp=True)):
            answer = status(service, {"Authorization": f"Bearer {bad}"})
            assert answer.status_code == 401, answer.text
    finally:
        assert service.stop() == 0


def test_a_jwks_key_verifies_only_its_own_algorithm(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**public, "kid": "k1", "alg": "RS256"}]}))
    service = ServiceProcess({"WORK_DIR": str(tmp_path / "s"), "AUTH_MODE": "jwt",
                              "INDEXING_ENABLED": "false", "JWT_JWKS_FILE": str(tmp_path / "jwks.json")},
                             tmp_path / "service.log").start()
    claims = {"tenant": "dave", "exp": int(time.time()) + 300}
    try:
        good = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"})
        assert status(service, {"Authorization": f"Bearer {good}"}).status_code == 200
        for bad in (jwt.encode(claims, private, algorithm="PS256", headers={"kid": "k1"}),
                    jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"}),
                    jwt.encode({**claims, "exp": str(claims["exp"])}, private, algorithm="RS256",
                               headers={"kid": "k1"})):
            answer = status(service, {"Authorization": f"Bearer {bad}"})
            assert answer.status_code == 401, answer.text
    finally:
        assert service.stop() == 0
