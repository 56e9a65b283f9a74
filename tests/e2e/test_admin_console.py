"""The admin console (README "Admin console") over real HTTP, and in a real browser.

Three services: auth on (API keys and sessions; an admin user of tenant `default`,
a user of tenant `beta`, one upload each), auth off on loopback, and auth off bound
on this machine's own non-loopback address (what a remote client reaches). The HTTP
tests check the guard and the CSRF rules with `requests`; the browser tests drive
Debian's Chromium through Playwright (`tests.support.browser`: installed with apt by
the set-up, never `playwright install`), save screenshots to tests/output/screenshots/
and check the phone layout. Tests of the reindex and delete buttons run when the
build has `context.reindexing` / `context.deletion`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from core import console
from core.auth import hash_key
from core.context import ServiceContext
from tests.support import browser as chromium
from tests.support.bundles import BundleBuilder
from tests.support.service import ServiceProcess

PASSWORD = "correct horse battery"
ADMIN_TOKEN = "admin-token-for-console-tests-0123"
BETA_KEY = "beta-api-key-for-console-tests"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "output" / "screenshots"
# this suite's ports, in its range 18400-18499
PORTS = {"on": 18410, "off": 18411, "exposed": 18412, "buttons": 18413, "target": 18414}
CONTEXT_FIELDS = {f.name for f in dataclasses.fields(ServiceContext)}
HAS_REINDEXING, HAS_DELETION = (hasattr(ServiceContext, name) or name in CONTEXT_FIELDS
                                for name in ("reindexing", "deletion"))


def start(root: Path, port: int, host: str = "127.0.0.1", **env: str) -> ServiceProcess:
    root.mkdir(parents=True, exist_ok=True)
    base = {"WORK_DIR": str(root / "storage"), "INDEXING_ENABLED": "false"}
    return ServiceProcess({**base, **env}, root / "service.log", host=host, port=port).start()


def upload(service: ServiceProcess, path: str, credential: str | None = None, name: str = "a.py") -> None:
    fields = {"session": credential} if credential else {}
    bundle = BundleBuilder(workspace_path=path).created(name, b"print(1)\n").build()
    answer = service.upload(bundle, workspace_path=path, **fields)
    assert answer.status_code == 200, answer.text


def post_json(service: ServiceProcess, path: str, body: Any, **headers: str) -> requests.Response:
    return requests.post(service.url + path, json=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def auth_on(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("console-on")
    (root / "keys.json").write_text(json.dumps({"tenants": {"beta": [hash_key(BETA_KEY)]}}))
    service = start(root, PORTS["on"], AUTH_MODE="api_key", API_KEYS_FILE=str(root / "keys.json"),
                    CTXCE_AUTH_ADMIN_TOKEN=ADMIN_TOKEN, AUTH_LOGIN_MAX_FAILURES="50")
    assert post_json(service, "/auth/users", {"username": "root", "password": PASSWORD}).status_code == 200
    bob = post_json(service, "/auth/users", {"username": "bob", "password": PASSWORD, "tenant": "beta"},
                    **{"X-Admin-Token": ADMIN_TOKEN})
    assert bob.status_code == 200, bob.text
    root_session = post_json(service, "/auth/login/password",
                             {"username": "root", "password": PASSWORD}).json()["session_id"]
    upload(service, "/work/alpha", root_session)
    upload(service, "/work/beta-repo", BETA_KEY)
    yield service
    assert service.stop() == 0
    log = (root / "service.log").read_text()
    assert PASSWORD not in log and ADMIN_TOKEN not in log and BETA_KEY not in log


@pytest.fixture(scope="module")
def auth_off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    service = start(tmp_path_factory.mktemp("console-off"), PORTS["off"])
    upload(service, "/work/myrepo", name="one.py")
    upload(service, "/work/myrepo", name="two.py")
    yield service
    assert service.stop() == 0


def own_address() -> str | None:
    """This machine's first non-loopback IPv4 address (`hostname -I`), if it has one."""
    try:
        found = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return next((a for a in found if "." in a and not a.startswith("127.")), None)


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    address = own_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to bind a service on")
    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
        except OSError as exc:
            pytest.skip(f"cannot bind {address}: {exc}")
    service = start(tmp_path_factory.mktemp("console-exposed"), PORTS["exposed"], host=address)
    yield service
    assert service.stop() == 0


def sign_in(service: ServiceProcess, username: str, password: str = PASSWORD) -> requests.Session:
    """A browser-like client: cookies kept, the login form's token sent back."""
    client = requests.Session()
    form = client.get(service.url + "/admin/login", timeout=30)
    answer = client.post(service.url + "/admin/login", allow_redirects=False, timeout=30,
                         data={"username": username, "password": password, "csrf_token": token_of(form.text)})
    assert answer.status_code == 303, answer.text
    return client


def token_of(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, "the page carries a CSRF token"
    return found.group(1)


def error_code(html: str) -> str | None:
    found = re.search(r'id="error-code">([A-Z_]+)<', html)
    return found.group(1) if found else None


# --- over HTTP ---------------------------------------------------------------------------------------

def test_auth_off_loopback_is_admin_of_the_one_tenant(auth_off: ServiceProcess) -> None:
    page = requests.get(auth_off.url + "/admin", timeout=30)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain http; over https it would be
    proxied = requests.get(auth_off.url + "/admin", headers={"X-Forwarded-Proto": "https"}, timeout=30)
    assert "; Secure" in proxied.headers["Set-Cookie"]  # https at a proxy in front
    assert 'id="role">admin<' in page.text and "/work/myrepo" in page.text
    assert "#2" in page.text and "#1" in page.text  # the journal, newest first
    spoofed = requests.get(auth_off.url + "/admin", params={"done": "<b>call us</b>"}, timeout=30)
    assert "call us" not in spoofed.text  # the notice names our actions only
    assert ('id="reindex-unavailable"' in page.text) is not HAS_REINDEXING
    if HAS_REINDEXING:  # indexing is off here: the section says so, the rest of the page answers
        assert 'id="index-note"' in page.text and "INDEXING_ENABLED=false" in page.text
    unknown = requests.get(auth_off.url + "/admin/nothing-here", timeout=30)
    assert unknown.status_code == 404 and error_code(unknown.text) == "NOT_FOUND"
    login = requests.get(auth_off.url + "/admin/login", allow_redirects=False, timeout=30)
    assert login.status_code == 303 and login.headers["Location"] == "/admin"  # nobody signs in


def test_auth_off_posts_need_the_forms_token(auth_off: ServiceProcess) -> None:
    client = requests.Session()
    token = token_of(client.get(auth_off.url + "/admin", timeout=30).text)
    action = auth_off.url + "/admin/actions/delete-workspace"
    fields = {"tenant": "", "workspace_path": "/work/myrepo"}
    for sent, headers in (({}, {}), ({"csrf_token": "x" * 43}, {}),
                          ({"csrf_token": token}, {"Origin": "http://evil.example"}),
                          ({"csrf_token": token}, {"Sec-Fetch-Site": "cross-site"})):
        refused = client.post(action, data={**fields, **sent}, headers=headers, timeout=30)
        assert refused.status_code == 403 and error_code(refused.text) == "CSRF_FAILED", (sent, headers)
    # no cookie: the token is bound to no browser
    stranger = requests.post(action, data={**fields, "csrf_token": token}, timeout=30)
    assert stranger.status_code == 403 and error_code(stranger.text) == "CSRF_FAILED"
    confirm = client.post(action, data={**fields, "csrf_token": token},
                          headers={"Origin": auth_off.url}, timeout=30)
    assert confirm.status_code == 200 and 'name="confirm" value="yes"' in confirm.text  # the confirm step


def test_auth_off_refuses_a_peer_that_is_not_loopback(exposed: ServiceProcess) -> None:
    refused = requests.get(exposed.url + "/admin", timeout=30)
    assert refused.status_code == 403 and error_code(refused.text) == "ADMIN_LOOPBACK_ONLY"
    assert "AUTH_MODE" in refused.text  # says what to do
    forwarded = requests.get(exposed.url + "/admin", headers={"X-Forwarded-For": "127.0.0.1"}, timeout=30)
    assert forwarded.status_code == 403  # a header never makes a peer loopback
    assert requests.get(exposed.url + "/health", timeout=30).status_code == 200  # the rest answers


def test_the_admin_target_serves_the_console_alone(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    service = ServiceProcess({"WORK_DIR": str(tmp_path / "storage"), "INDEXING_ENABLED": "false"},
                             tmp_path / "service.log", target="admin", port=PORTS["target"]).start()
    try:
        root = requests.get(service.url + "/", allow_redirects=False, timeout=30)
        assert root.status_code == 303 and root.headers["Location"] == "/admin"
        assert requests.get(service.url + "/admin", timeout=30).status_code == 200
        assert requests.get(service.url + "/health", timeout=30).status_code == 200
        assert requests.get(service.url + "/api/v1/delta/status", timeout=30).status_code == 404
    finally:
        assert service.stop() == 0


def test_auth_on_signs_in_with_a_session_cookie(auth_on: ServiceProcess) -> None:
    first = requests.get(auth_on.url + "/admin", allow_redirects=False, timeout=30)
    assert first.status_code == 303 and first.headers["Location"] == "/admin/login"
    client = requests.Session()
    form = client.get(auth_on.url + "/admin/login", timeout=30)
    wrong = client.post(auth_on.url + "/admin/login", timeout=30,
                        data={"username": "root", "password": "wrong password",
                              "csrf_token": token_of(form.text)})
    assert wrong.status_code == 401 and "Invalid user name or password" in wrong.text
    no_token = client.post(auth_on.url + "/admin/login", data={"username": "root", "password": PASSWORD},
                           timeout=30)
    assert no_token.status_code == 403 and error_code(no_token.text) == "CSRF_FAILED"
    answer = client.post(auth_on.url + "/admin/login", allow_redirects=False, timeout=30,
                         data={"username": "root", "password": PASSWORD, "csrf_token": token_of(form.text)})
    assert answer.status_code == 303
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("ctxce_admin_session=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session = client.cookies["ctxce_admin_session"]
    page = client.get(auth_on.url + "/admin", timeout=30)
    assert 'id="role">admin<' in page.text and "/work/alpha" in page.text and "/work/beta-repo" in page.text
    assert 'data-tenant="beta"' in page.text and 'data-tenant="default"' in page.text
    old_token = token_of(form.text)  # made before the session: not this session's
    stale = client.post(auth_on.url + "/admin/logout", data={"csrf_token": old_token}, timeout=30)
    assert stale.status_code == 403 and error_code(stale.text) == "CSRF_FAILED"
    out = client.post(auth_on.url + "/admin/logout", data={"csrf_token": token_of(page.text)},
                      allow_redirects=False, timeout=30)
    assert out.status_code == 303 and out.headers["Location"] == "/admin/login"
    ended = requests.get(auth_on.url + "/api/v1/delta/status", params={"workspace_path": "/work/alpha"},
                         headers={"Authorization": f"Bearer {session}"}, timeout=30)
    assert ended.status_code == 401  # signing out ended the session itself


def test_a_user_sees_and_changes_only_their_tenant(auth_on: ServiceProcess) -> None:
    client = sign_in(auth_on, "bob")
    page = client.get(auth_on.url + "/admin", timeout=30)
    assert 'id="role">user<' in page.text and 'id="tenants"' not in page.text
    assert "/work/beta-repo" in page.text and "/work/alpha" not in page.text
    other = client.get(auth_on.url + "/admin", params={"tenant": "0" * 16}, timeout=30)
    assert "/work/alpha" not in other.text and "/work/beta-repo" in other.text  # the filter is the user's own
    refused = client.post(auth_on.url + "/admin/actions/delete-collection", timeout=30,
                          data={"tenant": "default", "collection_name": "x",
                                "csrf_token": token_of(page.text)})
    assert refused.status_code == 403 and error_code(refused.text) == "FORBIDDEN"


def test_api_keys_and_the_admin_token_reach_the_guard_cookies_only_sessions(auth_on: ServiceProcess) -> None:
    keyed = requests.get(auth_on.url + "/admin", headers={"X-API-Key": BETA_KEY}, timeout=30)
    assert 'id="role">user<' in keyed.text and "/work/alpha" not in keyed.text
    admin = requests.get(auth_on.url + "/admin", headers={"X-Admin-Token": ADMIN_TOKEN}, timeout=30)
    assert 'id="role">admin<' in admin.text and "/work/alpha" in admin.text
    beta_only = requests.get(auth_on.url + "/admin", params={"tenant": console.tenant_digest("beta")},
                             headers={"X-Admin-Token": ADMIN_TOKEN}, timeout=30)
    assert "/work/beta-repo" in beta_only.text and "/work/alpha" not in beta_only.text  # an admin's filter
    wrong = requests.get(auth_on.url + "/admin", headers={"X-Admin-Token": "not-it" * 4},
                         allow_redirects=False, timeout=30)
    assert wrong.status_code == 303  # refused: back to the sign-in page
    cookie = requests.get(auth_on.url + "/admin", cookies={"ctxce_admin_session": BETA_KEY},
                          allow_redirects=False, timeout=30)
    assert cookie.status_code == 303 and cookie.headers["Location"] == "/admin/login"


# --- in a browser --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        executable = chromium.ensure_chromium()
    except chromium.BrowserUnavailable as exc:
        pytest.skip(f"no Chromium: {exc}")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="console-chromium-") as profile, sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            profile, executable_path=str(executable), args=chromium.ARGS, headless=True,
            viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        yield context
        context.close()


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    browser.clear_cookies()
    page = browser.new_page()
    yield page
    page.close()


def browser_sign_in(tab: Any, service: ServiceProcess, username: str) -> None:
    tab.goto(service.url + "/admin")
    assert tab.url.endswith("/admin/login")
    tab.fill("input[name=username]", username)
    tab.fill("input[name=password]", PASSWORD)
    tab.click("button[type=submit]")
    tab.wait_for_url(service.url + "/admin")


def test_browser_admin_sees_every_tenant_on_desktop_and_phone(tab: Any, auth_on: ServiceProcess) -> None:
    browser_sign_in(tab, auth_on, "root")
    assert tab.inner_text("#role") == "admin"
    rows = tab.locator("#workspaces tbody tr")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.workspace)")) == ["/work/alpha",
                                                                                  "/work/beta-repo"]
    tab.screenshot(path=str(SCREENSHOTS / "admin-desktop.png"), full_page=True)
    tab.set_viewport_size({"width": 390, "height": 844})
    tab.reload()
    tab.screenshot(path=str(SCREENSHOTS / "admin-phone.png"), full_page=True)
    assert tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll"
    for target in tab.locator("button, a").all():
        box = target.bounding_box()
        assert box is not None and box["height"] >= 40, "tap targets of at least 40 px"


def test_browser_user_sees_their_tenant_only(tab: Any, auth_on: ServiceProcess) -> None:
    browser_sign_in(tab, auth_on, "bob")
    assert tab.inner_text("#role") == "user" and tab.locator("#tenants").count() == 0
    paths = tab.locator("#workspaces tbody tr").evaluate_all("rs => rs.map(r => r.dataset.workspace)")
    assert paths == ["/work/beta-repo"]


def test_browser_form_without_or_with_a_wrong_token_is_refused(tab: Any, auth_on: ServiceProcess) -> None:
    browser_sign_in(tab, auth_on, "bob")
    token = "document.querySelector('form[action=\"/admin/logout\"] input[name=csrf_token]')"
    tab.evaluate(f"{token}.value = 'x'")
    tab.click("#sign-out")
    assert tab.inner_text("#error-code") == "CSRF_FAILED"
    tab.goto(auth_on.url + "/admin")
    tab.evaluate(f"{token}.remove()")
    tab.click("#sign-out")
    assert tab.inner_text("#error-code") == "CSRF_FAILED"
    tab.goto(auth_on.url + "/admin")
    tab.click("#sign-out")  # the real token: signed out
    tab.wait_for_url(auth_on.url + "/admin/login")


def test_browser_auth_off_loopback_only(tab: Any, auth_off: ServiceProcess, exposed: ServiceProcess) -> None:
    tab.goto(auth_off.url + "/admin")
    assert tab.inner_text("#role") == "admin"
    assert tab.locator("tr[data-workspace='/work/myrepo']").count() == 1
    answer = tab.goto(exposed.url + "/admin")
    assert answer is not None and answer.status == 403
    assert tab.inner_text("#error-code") == "ADMIN_LOOPBACK_ONLY"
    tab.screenshot(path=str(SCREENSHOTS / "admin-loopback-only.png"))


@pytest.fixture
def indexed(tmp_path: Path) -> Iterator[ServiceProcess]:
    """Auth off with indexing on (the embedded engine), one workspace uploaded."""
    service = start(tmp_path, PORTS["buttons"], INDEXING_ENABLED="true")
    upload(service, "/work/buttons")
    yield service
    assert service.stop() == 0


@pytest.mark.skipif(not HAS_REINDEXING, reason="this build has no context.reindexing yet")
def test_browser_reindex_and_abort(tab: Any, indexed: ServiceProcess) -> None:
    tab.goto(indexed.url + "/admin")
    collection = tab.locator("#collections tbody tr").first
    name = collection.get_attribute("data-collection")
    assert name and collection.locator("td.num").inner_text() != "—"  # its points
    collection.locator("button[data-action=reindex]").click()
    assert "Done: reindex" in tab.inner_text(".notice")
    assert name in tab.inner_text("#jobs")  # its job, with its progress
    abort = tab.locator(f"#collections tr[data-collection='{name}'] button[data-action=abort]")
    if abort.count():  # still building: abort it, unless it finishes first
        abort.click()
        answer = tab.locator(".notice, #error-code").first.inner_text()
        assert answer in ("Done: abort.", "REINDEX_FINISHED"), answer
    tab.goto(indexed.url + "/admin")
    tab.screenshot(path=str(SCREENSHOTS / "admin-reindex.png"), full_page=True)


@pytest.mark.skipif(not HAS_DELETION, reason="this build has no context.deletion yet")
def test_browser_delete_a_workspace_and_a_collection(tab: Any, indexed: ServiceProcess) -> None:
    tab.goto(indexed.url + "/admin")
    name = tab.locator("#collections tbody tr").first.get_attribute("data-collection")
    tab.locator("tr[data-workspace='/work/buttons'] button[data-action=delete-workspace]").click()
    tab.click("#confirm")
    assert "Done: delete workspace" in tab.inner_text(".notice")
    assert tab.locator("tr[data-workspace='/work/buttons']").count() == 0
    tab.locator(f"#collections tr[data-collection='{name}'] button[data-action=delete-collection]").click()
    tab.click("#confirm")
    assert "Done: delete collection" in tab.inner_text(".notice")
    assert tab.locator(f"#collections tr[data-collection='{name}']").count() == 0
