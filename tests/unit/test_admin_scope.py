"""The admin surface's rules in plain code: who is admin of what (`core.admin`), the CSRF
tokens (`core.csrf`) and what the console reads from storage (`core.console`)."""

from __future__ import annotations

import json

import pytest

from core import console, csrf
from core.admin import AdminLoopbackOnly, AdminScope, identity_scope, is_loopback, loopback_scope
from core.auth.records import Identity
from core.keys import csrf_secret_key, head_key, journal_key, tenant_workspace_key, workspace_key
from core.models import ProcessedOperations, UploadResult
from core.sequences import HeadRecord, PendingBundle
from core.storage.filesystem import FilesystemStore


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("192.0.2.2", False), ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("fd00::2", False),
    ("0.0.0.0", False), ("", False), (None, False), ("localhost", False), ("127.0.0.1, 10.0.0.1", False),
])
def test_loopback_peers(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_auth_off_loopback_is_admin_of_the_empty_tenant_and_nobody_else() -> None:
    assert loopback_scope("::1") == AdminScope(tenant="", all_tenants=True, user=None)
    with pytest.raises(AdminLoopbackOnly) as refused:
        loopback_scope("192.0.2.2")
    assert refused.value.http_status == 403 and refused.value.code == "ADMIN_LOOPBACK_ONLY"
    assert "AUTH_MODE" in refused.value.message


def test_admin_users_see_every_tenant_others_their_own() -> None:
    admin = identity_scope(Identity(tenant="default", user_id="1", username="root", admin=True))
    user = identity_scope(Identity(tenant="beta", user_id="2", username="bob"))
    keyed = identity_scope(Identity(tenant="beta"))
    assert admin.may_act_on("beta") and admin.may_act_on("default")
    assert user.may_act_on("beta") and not user.may_act_on("default") and user.user == "bob"
    assert not keyed.all_tenants and keyed.user is None


def test_csrf_tokens_bind_browser_and_session(fs_store: FilesystemStore) -> None:
    secret = csrf.load_secret(fs_store)
    assert csrf.load_secret(fs_store) == secret and len(secret) == 32  # written once, read by every instance
    assert json.loads(fs_store.get(csrf_secret_key()).body)["format"] == 1
    browser, other = csrf.new_browser_id(), csrf.new_browser_id()
    token = csrf.token(secret, browser, "session-a")
    assert csrf.valid(secret, browser, "session-a", token)
    assert not csrf.valid(secret, other, "session-a", token)
    assert not csrf.valid(secret, browser, "session-b", token)
    assert not csrf.valid(secret, browser, None, token)
    assert not csrf.valid(b"x" * 32, browser, "session-a", token)  # another deployment's
    assert not csrf.valid(secret, "planted", "session-a", csrf.token(secret, "planted", "session-a"))
    assert not csrf.valid(secret, browser, "session-a", None) and not csrf.valid(secret, None, None, token)
    assert not csrf.valid(secret, browser, "session-a", "é" * 43)


def store_workspace(store: FilesystemStore, tenant: str, path: str, sequences: int, *,
                    record_tenant: bool = True, pending: bool = False) -> str:
    """A workspace as the pipeline leaves it: head, journal entries and the tenant's record."""
    ws = workspace_key(tenant, path, None)
    claim = PendingBundle(bundle_id="b-next", sequence=sequences + 1, owner="o", collection_name="c",
                          claimed_at="2026-12-01T00:00:00Z", lease_expires_at=4e9) if pending else None
    head = HeadRecord(workspace_key=ws, workspace_path=path, collection_name="c", last_sequence=sequences,
                      last_upload="2026-12-01T00:00:00Z", pending=claim)
    store.put(head_key(ws), head.model_dump_json().encode())
    for n in range(1, sequences + 1):
        entry = UploadResult(bundle_id=f"b{n}", workspace_path=path, workspace_key=ws, collection_name="c",
                             sequence_number=n, next_sequence=n + 1, committed_at=f"t{n}",
                             processed_operations=ProcessedOperations(created=n), processing_time_ms=1.0)
        store.put(journal_key(ws, n), entry.model_dump_json().encode())
    record = {"format": 1, "workspace_path": path, "logical_repo_id": None, "workspace_key": ws}
    named = record | ({"tenant": tenant} if record_tenant else {})
    store.put(tenant_workspace_key(tenant, ws), json.dumps(named).encode())
    return ws


def test_console_lists_tenants_workspaces_and_the_last_journal_entries(fs_store: FilesystemStore) -> None:
    store_workspace(fs_store, "alpha", "/w/a", 7, pending=True)
    store_workspace(fs_store, "beta", "/w/b", 1)
    store_workspace(fs_store, "old", "/w/old", 1, record_tenant=False)  # a record from before the console
    admin = AdminScope(tenant="alpha", all_tenants=True, user="root")
    tenants, cut = console.tenants(fs_store, admin)
    assert not cut and {t.tenant for t in tenants} == {"alpha", "beta", None}
    assert {t.digest for t in tenants if t.tenant is None} == {console.tenant_digest("old")}
    page = console.workspace_page(fs_store, 30.0, admin, None, "", lambda collection, ws: 42)
    by_path = {row.workspace_path: row for row in page.rows}
    assert set(by_path) == {"/w/a", "/w/b", "/w/old"} and page.next_cursor is None
    alpha = by_path["/w/a"]
    assert alpha.tenant == "alpha" and alpha.indexed_points == 42 and alpha.last_sequence == 7
    assert [j.sequence for j in alpha.journal] == [7, 6, 5, 4, 3]  # the last five, newest first
    assert alpha.journal[0].operations == "7 created" and alpha.pending_bundle == "b-next"
    assert alpha.lease_expires_in_s is not None and alpha.lease_expires_in_s > 0
    assert by_path["/w/old"].tenant is None  # shown by digest, read-only
    user = AdminScope(tenant="beta", all_tenants=False, user="bob")
    own = console.workspace_page(fs_store, 30.0, user, console.tenant_digest("alpha"), "", None)
    assert [r.workspace_path for r in own.rows] == ["/w/b"]  # a user's filter is their own tenant
    first = console.workspace_page(fs_store, 30.0, admin, None, "", None, limit=2)
    assert len(first.rows) == 2 and first.next_cursor is not None
    rest = console.workspace_page(fs_store, 30.0, admin, None, first.next_cursor, None, limit=2)
    assert {r.workspace_path for r in first.rows + rest.rows} == set(by_path)


def test_a_record_cannot_claim_another_tenant(fs_store: FilesystemStore) -> None:
    ws = store_workspace(fs_store, "mallory", "/w/m", 1)
    key = tenant_workspace_key("mallory", ws)
    fs_store.put(key, json.dumps({**json.loads(fs_store.get(key).body), "tenant": "alpha"}).encode())
    tenants, _ = console.tenants(fs_store, AdminScope(tenant="", all_tenants=True, user=None))
    assert [t.tenant for t in tenants] == [None]
