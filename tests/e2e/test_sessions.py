"""Sessions and users as the existing Context-Engine clients speak them, over real HTTP.

One service with `CTXCE_AUTH_ENABLED=1` (sessions only) carries the main flow: the
open first user, admin-only users afterwards, password and shared-token logins,
uploads with the `session` form field, reads with the session in every place a
credential goes, and the credential-less status the upload clients send. Other
services check expiry, sliding extension, the failed-login limit and auth off.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from core.keys import login_failures_key
from tests.support.bundles import BundleBuilder
from tests.support.service import ServiceProcess

SHARED = "shared-token-for-tests-0123"
ADMIN_TOKEN = "admin-token-for-tests-0123456789"
PASSWORD = "correct horse battery"
SECRETS = [SHARED, ADMIN_TOKEN, PASSWORD]  # and every session id made: none may reach the log
TENANT_FIELDS = {"last_sequence", "workspace_key", "last_upload", "last_bundle_id", "pending_operations",
                 "pending_bundle", "indexed_points"}


def post(service: ServiceProcess, path: str, body: Any, **headers: str) -> requests.Response:
    return requests.post(service.url + path, json=body, headers=headers, timeout=60)


def login(service: ServiceProcess, username: str, password: str = PASSWORD) -> requests.Response:
    return post(service, "/auth/login/password", {"username": username, "password": password,
                                                   "workspace": "/home/dev/myrepo"})


def session_of(service: ServiceProcess, username: str) -> str:
    answer = login(service, username)
    assert answer.status_code == 200, answer.text
    SECRETS.append(answer.json()["session_id"])
    return str(answer.json()["session_id"])


def start(root: Path, **env: str) -> ServiceProcess:
    root.mkdir(parents=True, exist_ok=True)
    base = {"WORK_DIR": str(root / "storage"), "INDEXING_ENABLED": "false"}
    return ServiceProcess({**base, **env}, root / "service.log").start()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("sessions")
    running = start(root, CTXCE_AUTH_ENABLED="1", CTXCE_AUTH_SHARED_TOKEN=SHARED,
                    CTXCE_AUTH_ADMIN_TOKEN=ADMIN_TOKEN, AUTH_LOGIN_MAX_FAILURES="50")
    yield running
    assert running.stop() == 0
    log = (root / "service.log").read_text()
    leaked = [s for s in SECRETS if s in log]
    assert not leaked, "passwords, tokens and session ids never reach the log"


@pytest.fixture(scope="module")
def admin(service: ServiceProcess) -> str:
    """The first user, created through the open window; its session id."""
    before = requests.get(service.url + "/auth/status", timeout=30).json()
    assert before == {"enabled": True, "has_users": False, "session_ttl_seconds": 0}
    created = post(service, "/auth/users", {"username": "Root", "password": PASSWORD})
    assert created.status_code == 200, created.text
    assert created.json()["username"] == "Root" and created.json()["admin"] is True
    assert requests.get(service.url + "/auth/status", timeout=30).json()["has_users"] is True
    return session_of(service, "root")  # names compare case-insensitively


def test_after_the_first_user_only_admins_create_users(service: ServiceProcess, admin: str) -> None:
    refused = post(service, "/auth/users", {"username": "mallory", "password": PASSWORD})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "UNAUTHORIZED"
    ok = post(service, "/auth/users", {"username": "dev", "password": PASSWORD}, **{"X-Admin-Token": admin})
    assert ok.status_code == 200 and ok.json()["username"] == "dev" and ok.json()["admin"] is False
    by_setting = post(service, "/auth/users", {"username": "ops", "password": PASSWORD},
                      **{"X-Admin-Token": ADMIN_TOKEN})
    assert by_setting.status_code == 200, by_setting.text
    again = post(service, "/auth/users", {"username": "DEV", "password": PASSWORD},
                 **{"X-Admin-Token": admin})
    assert again.status_code == 409 and again.json()["error"]["code"] == "USER_EXISTS"
    dev = session_of(service, "dev")
    not_admin = post(service, "/auth/users", {"username": "eve", "password": PASSWORD},
                     **{"X-Admin-Token": dev})
    assert not_admin.status_code == 403 and not_admin.json()["error"]["code"] == "FORBIDDEN"
    wrong = post(service, "/auth/users", {"username": "eve", "password": PASSWORD},
                 **{"X-Admin-Token": "not-a-token"})
    assert wrong.status_code == 401
    short = post(service, "/auth/users", {"username": "eve", "password": "short"},
                 **{"X-Admin-Token": admin})
    assert short.status_code == 400 and "short" not in short.text
    own_tenant = post(service, "/auth/users", {"username": "eve", "password": PASSWORD, "tenant": "team2"})
    assert own_tenant.status_code == 403  # only an admin names a tenant
    team = post(service, "/auth/users", {"username": "tess", "password": PASSWORD, "tenant": "team2"},
                **{"X-Admin-Token": admin})
    assert team.status_code == 200 and team.json()["tenant"] == "team2"
    tess = session_of(service, "tess")
    theirs = service.upload(BundleBuilder().created("t.py", b"t\n").build(), session=tess)
    assert theirs.status_code == 200 and theirs.json()["collection_name"] == "team2--myrepo-test"


def test_a_password_session_uploads_and_reads_the_full_view(service: ServiceProcess, admin: str) -> None:
    session = session_of(service, "root")
    uploaded = service.upload(BundleBuilder().created("src/app.py", b"print(1)\n").build(), session=session)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["collection_name"] == "default--myrepo-test"
    for how in ({"headers": {"Authorization": f"Bearer {session}"}}, {"headers": {"X-API-Key": session}},
                {"params": {"session": session}}):
        params = {"workspace_path": "/work/myrepo", **how.get("params", {})}
        view = requests.get(service.url + "/api/v1/delta/status", params=params,
                            headers=how.get("headers", {}), timeout=30)
        assert view.status_code == 200 and view.json()["last_sequence"] == 1, how
        assert view.json()["last_bundle_id"] == uploaded.json()["bundle_id"]
        files = requests.get(service.url + "/api/v1/delta/manifest", params=params,
                             headers=how.get("headers", {}), timeout=30)
        assert files.status_code == 200 and list(files.json()["files"]) == ["src/app.py"], how


def test_credential_less_status_shows_no_tenant_data(service: ServiceProcess, admin: str) -> None:
    uploaded = service.upload(BundleBuilder().created("README.md", b"hi\n").build(),
                              session=session_of(service, "root"))
    assert uploaded.status_code == 200, uploaded.text
    anonymous = service.status()
    assert anonymous.status_code == 200, anonymous.text
    view = anonymous.json()
    assert view["status"] == "ready" and view["workspace_path"] == "/work/myrepo"
    assert view["collection_name"] == "my-collection"  # the deployment's, not the tenant's
    assert view["server_info"]["supported_formats"] == ["tar.gz"]
    assert not TENANT_FIELDS & set(view), view
    assert uploaded.json()["bundle_id"] not in anonymous.text
    assert uploaded.json()["workspace_key"] not in anonymous.text
    assert service.manifest().status_code == 401
    assert service.upload(BundleBuilder().created("x", b"1").build()).status_code == 401
    wrong = service.status(session=secrets.token_urlsafe(32))  # a credential, but no session
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "UNAUTHORIZED"


def test_shared_token_login_gives_a_session_of_the_default_tenant(service: ServiceProcess,
                                                                   admin: str) -> None:
    body = {"client": "ctxce", "workspace": "/home/dev/myrepo", "token": SHARED}
    answer = post(service, "/auth/login", body)
    assert answer.status_code == 200, answer.text
    session = answer.json()
    assert set(session) == {"session_id", "user_id", "expires_at"} and session["expires_at"] == 0
    SECRETS.append(session["session_id"])
    view = service.status(session=session["session_id"]).json()
    assert view["last_sequence"] >= 1  # the same default tenant as the password users
    wrong = post(service, "/auth/login", {**body, "token": "not-the-token"})
    assert wrong.status_code == 401 and "not-the-token" not in wrong.text


def test_wrong_sessions_are_refused_with_401(service: ServiceProcess, admin: str) -> None:
    for bad in (secrets.token_urlsafe(32), "short", "x" * 500):
        refused = service.upload(BundleBuilder().created("y", b"2").build(), session=bad)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "UNAUTHORIZED"
    bad_login = login(service, "root", "wrong password")
    assert bad_login.status_code == 401 and "wrong password" not in bad_login.text
    assert login(service, "nobody").status_code == 401


def test_auth_bodies_are_small_json_objects(service: ServiceProcess) -> None:
    big = requests.post(service.url + "/auth/login", data=b"{" + b" " * 20_000 + b"}",
                        headers={"Content-Type": "application/json"}, timeout=30)
    assert big.status_code == 413 and big.json()["error"]["code"] == "REQUEST_TOO_LARGE"
    for body in (b"not json", b"[]", b'{"token": 5}', b""):
        answer = requests.post(service.url + "/auth/login", data=body, timeout=30)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "INVALID_REQUEST", body
    assert requests.get(service.url + "/auth/login", timeout=30).status_code == 405


def _stored_session(root: Path, session: str) -> dict[str, Any]:
    digest = hashlib.sha256(session.encode()).hexdigest()
    return dict(json.loads((root / "storage" / "auth" / "sessions" / f"{digest}.json").read_text()))


def test_sessions_expire_and_slide(tmp_path: Path) -> None:
    service = start(tmp_path, AUTH_MODE="session", CTXCE_AUTH_SESSION_TTL_SECONDS="4")
    try:
        assert requests.get(service.url + "/auth/status", timeout=30).json()["session_ttl_seconds"] == 4
        assert post(service, "/auth/users", {"username": "dev", "password": PASSWORD}).status_code == 200
        used, idle = session_of(service, "dev"), session_of(service, "dev")
        expires = _stored_session(tmp_path, used)["expires_at"]
        assert login(service, "dev").json()["expires_at"] == pytest.approx(time.time() + 4, abs=2)
        assert service.status(session=used).status_code == 200  # more than half left: no write
        assert _stored_session(tmp_path, used)["expires_at"] == expires
        time.sleep(2.5)
        assert service.status(session=used).status_code == 200  # less than half left: extended
        assert _stored_session(tmp_path, used)["expires_at"] > expires + 2
        time.sleep(2.0)  # past the first expiry
        assert service.status(session=used).status_code == 200
        expired = service.status(session=idle)
        assert expired.status_code == 401 and expired.json()["error"]["code"] == "UNAUTHORIZED"
        assert "expired" in expired.json()["error"]["message"]
    finally:
        assert service.stop() == 0


def test_failed_logins_are_limited_across_instances(tmp_path: Path) -> None:
    env = {"CTXCE_AUTH_ENABLED": "1", "AUTH_LOGIN_MAX_FAILURES": "3", "AUTH_LOGIN_WINDOW_SECS": "120"}
    first = start(tmp_path, **env)
    second = ServiceProcess({**first.env}, tmp_path / "second.log").start()  # the same storage
    try:
        assert post(first, "/auth/users", {"username": "dev", "password": PASSWORD}).status_code == 200
        codes = [login(first, "dev", "wrong-1").status_code, login(second, "dev", "wrong-2").status_code,
                 login(first, "dev", "wrong-3").status_code]
        assert codes == [401, 401, 401]
        for instance in (first, second):
            limited = login(instance, "dev")  # even the right password, until the window ends
            assert limited.status_code == 429 and limited.json()["error"]["code"] == "LOGIN_RATE_LIMITED"
            assert 1 <= int(limited.headers["Retry-After"]) <= 120
        storage = tmp_path / "storage"
        for kind, subject in (("user", "dev"), ("address", "127.0.0.1")):
            record = json.loads((storage / login_failures_key(kind, subject)).read_text())
            assert record["failures"] == 3, kind
        token = post(second, "/auth/login", {"token": "anything"})  # the address is limited too
        assert token.status_code == 429
    finally:
        assert second.stop() == 0 and first.stop() == 0


def test_auth_status_when_auth_is_off_and_the_auth_target(tmp_path: Path) -> None:
    off = start(tmp_path / "off")
    on = start(tmp_path / "on", CTXCE_AUTH_ENABLED="1")
    target = ServiceProcess({**on.env}, tmp_path / "target.log", target="auth").start()
    try:
        status = requests.get(off.url + "/auth/status", timeout=30)
        assert status.json() == {"enabled": False, "has_users": None, "session_ttl_seconds": 0}
        disabled = post(off, "/auth/login", {"token": "x"})
        assert disabled.status_code == 404 and disabled.json()["error"]["code"] == "AUTH_DISABLED"
        assert off.status().json()["last_sequence"] == 0  # auth off: the full view, as before
        assert requests.get(target.url + "/auth/status", timeout=30).json()["enabled"] is True
        created = post(target, "/auth/users", {"username": "dev", "password": PASSWORD})
        assert created.status_code == 200, created.text
        session = session_of(target, "dev")  # made by the auth target, used on the router
        assert on.status(session=session).json()["last_sequence"] == 0
        assert requests.get(target.url + "/auth/nothing", timeout=30).status_code == 404
    finally:
        assert target.stop() == 0 and on.stop() == 0 and off.stop() == 0
