"""Every endpoint over real HTTP, on the filesystem backend and on S3 (moto server)."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.e2e.conftest import StorageProbe
from tests.support.bundles import BundleBuilder, sha1_ref
from tests.support.service import ServiceProcess

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_health_reports_the_seed_fields_and_readiness(service: ServiceProcess) -> None:
    import requests

    body = requests.get(service.url + "/health", timeout=10).json()
    assert {"status", "timestamp", "version", "qdrant_url", "work_dir", "storage_backend"} <= set(body)
    assert body["status"] == "healthy"
    for path in ("/ready", "/health?ready=1"):
        ready = requests.get(service.url + path, timeout=30)
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"storage": "ok", "qdrant": "ok"}


def test_status_of_a_new_workspace(service: ServiceProcess, workspace: str) -> None:
    body = service.status(workspace).json()
    assert body["workspace_path"] == workspace
    assert body["last_sequence"] == 0
    assert body["status"] == "ready"
    assert body["collection_name"]
    assert body["pending_operations"] == 0
    assert body["server_info"]["max_bundle_size_mb"] == 100
    assert "tar.gz" in body["server_info"]["supported_formats"]


def test_real_client_bundles_apply_in_order(
    service: ServiceProcess, probe: StorageProbe, workspace: str
) -> None:
    first = service.upload((FIXTURES / "real-client-1-initial.tar.gz").read_bytes(), workspace)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["success"] is True and body["sequence_number"] == 1 and body["next_sequence"] == 2
    assert body["processed_operations"]["created"] == 5
    assert body["processing_time_ms"] > 0
    second = service.upload((FIXTURES / "real-client-2-update.tar.gz").read_bytes(), workspace)
    assert second.status_code == 200, second.text
    counts = second.json()["processed_operations"]
    assert (counts["updated"], counts["moved"], counts["deleted"]) == (1, 1, 1)
    tree = probe.tree(body["workspace_key"])
    assert sorted(tree) == ["docs/metadata/operations.json", "lib/util.py",
                            "public/manifest.json", "src/app.py"]
    status = service.status(workspace).json()
    assert status["last_sequence"] == 2
    assert status["collection_name"] == "myrepo-demo"
    assert status["last_upload"]
    files = service.manifest(workspace).json()["files"]
    assert files == {path: sha1_ref(data) for path, data in tree.items()}
    assert probe.scratch_is_empty()


def test_bundle_without_leading_folder_and_zero_operation_bundle(
    service: ServiceProcess, probe: StorageProbe, workspace: str
) -> None:
    flat = BundleBuilder(leading_folder=False).created("a.py", b"print(1)\n")
    assert service.upload(flat.build(), workspace).json()["sequence_number"] == 1
    empty = service.upload(BundleBuilder().build(), workspace)
    assert empty.status_code == 200, empty.text
    assert empty.json()["sequence_number"] == 2
    assert sum(empty.json()["processed_operations"].values()) == 0
    assert probe.tree(empty.json()["workspace_key"]) == {"a.py": b"print(1)\n"}


def test_explicit_sequence_mismatch_gets_409_unless_forced(
    service: ServiceProcess, workspace: str
) -> None:
    assert service.upload(BundleBuilder().created("a", b"1").build(), workspace).status_code == 200
    wrong = service.upload(BundleBuilder().created("b", b"2").build(), workspace, sequence_number="5")
    assert wrong.status_code == 409
    error = wrong.json()["error"]
    assert wrong.json()["success"] is False
    assert error["code"] == "SEQUENCE_MISMATCH"
    assert (error["expected_sequence"], error["received_sequence"]) == (2, 5)
    assert error["retry_after"] > 0 and error["message"]
    in_manifest = BundleBuilder(sequence_number=7).created("c", b"3").build()
    assert service.upload(in_manifest, workspace).json()["error"]["code"] == "SEQUENCE_MISMATCH"
    forced = service.upload(BundleBuilder().created("b", b"2").build(), workspace,
                            sequence_number="5", force="True")
    assert forced.status_code == 200 and forced.json()["sequence_number"] == 2
    right = service.upload(BundleBuilder().created("d", b"4").build(), workspace, sequence_number="3")
    assert right.status_code == 200 and right.json()["sequence_number"] == 3


def test_same_bundle_id_is_never_applied_twice(
    service: ServiceProcess, probe: StorageProbe, workspace: str
) -> None:
    first = BundleBuilder().created("app.py", b"v1")
    raw = first.build()
    original = service.upload(raw, workspace).json()
    later = service.upload(BundleBuilder().updated("app.py", b"v2", previous=b"v1").build(), workspace)
    assert later.json()["sequence_number"] == 2
    again = service.upload(raw, workspace)
    assert again.status_code == 200
    repeat = again.json()
    assert repeat["duplicate"] is True
    assert repeat["sequence_number"] == original["sequence_number"] == 1
    assert repeat["processed_operations"] == original["processed_operations"]
    assert probe.tree(original["workspace_key"]) == {"app.py": b"v2"}
    assert service.status(workspace).json()["last_sequence"] == 2
    reused = BundleBuilder(bundle_id=first.bundle_id).created("other.py", b"x").build()
    conflict = service.upload(reused, workspace)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "BUNDLE_ID_CONFLICT"


def test_unchanged_update_and_missing_delete_are_skipped(
    service: ServiceProcess, workspace: str
) -> None:
    service.upload(BundleBuilder().created("a.py", b"same").build(), workspace)
    body = service.upload(
        BundleBuilder().updated("a.py", b"same").deleted("never-existed.py").build(), workspace
    ).json()
    assert body["success"] is True
    assert body["processed_operations"]["skipped"] == 2
    assert body["processed_operations"]["updated"] == 0


def test_moves_without_content_use_the_servers_copy_even_in_a_swap(
    service: ServiceProcess, probe: StorageProbe, workspace: str
) -> None:
    """Operations apply in order, so a swap goes through a temporary name, as a client's
    `mv` would; the pre-bundle bytes are what every move reads."""
    first = service.upload(
        BundleBuilder().created("a.py", b"A").created("b.py", b"B").created("c.py", b"C").build(),
        workspace,
    ).json()
    swap = (BundleBuilder()
            .moved("a.py", "tmp.py", content_hash_of=b"A")
            .moved("b.py", "a.py", content_hash_of=b"B")
            .moved("tmp.py", "b.py", content_hash_of=b"A")
            .moved("c.py", "dir/c.py"))
    body = service.upload(swap.build(), workspace).json()
    assert body["processed_operations"]["moved"] == 3, body
    assert body["processed_operations"]["skipped"] == 1  # tmp.py: named, and ends as it was
    assert probe.tree(first["workspace_key"]) == {"a.py": b"B", "b.py": b"A", "dir/c.py": b"C"}
    assert not probe.keys(f"workspaces/{first['workspace_key']}/plans/")
    literal = BundleBuilder().moved("a.py", "b.py", content_hash_of=b"B").moved("b.py", "a.py",
                                                                                 content_hash_of=b"A")
    body = service.upload(literal.build(), workspace).json()  # in order: b.py is overwritten first
    assert [(f["operation"], f["path"]) for f in body["failures"]] == [("moved", "a.py")]
    assert probe.tree(first["workspace_key"]) == {"b.py": b"B", "dir/c.py": b"C"}


def test_move_of_a_file_the_server_lacks_is_reported_as_failed(
    service: ServiceProcess, workspace: str
) -> None:
    body = service.upload(BundleBuilder().moved("gone.py", "new.py").build(), workspace).json()
    assert body["success"] is True
    assert body["processed_operations"]["failed"] == 1
    assert body["failures"][0]["path"] == "new.py"


def test_manifest_pages_through_every_file(service: ServiceProcess, workspace: str) -> None:
    builder = BundleBuilder()
    names = [f"pkg/m{i:02d}.py" for i in range(7)] + ["pkg-x.py", "pkg.py", "z/é.py"]
    for name in names:
        builder.created(name, name.encode())
    service.upload(builder.build(), workspace)
    seen: dict[str, str] = {}
    cursor = ""
    pages = 0
    while True:
        page = service.manifest(workspace, limit=3, cursor=cursor).json()
        assert page["last_sequence"] == 1
        assert len(page["files"]) <= 3
        seen.update(page["files"])
        pages += 1
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert seen == {name: sha1_ref(name.encode()) for name in names}
    assert pages == 4
    bad = service.manifest(workspace, limit="0")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_REQUEST"


def test_same_folder_name_from_two_repos_never_collides(
    service: ServiceProcess, probe: StorageProbe, workspace: str
) -> None:
    alice = service.upload(BundleBuilder().created("who", b"alice").build(), workspace,
                           logical_repo_id="git:aaaaaaaaaaaaaaaa").json()
    bob = service.upload(BundleBuilder().created("who", b"bob").build(), workspace,
                         logical_repo_id="git:bbbbbbbbbbbbbbbb").json()
    assert alice["workspace_key"] != bob["workspace_key"]
    assert alice["sequence_number"] == bob["sequence_number"] == 1
    assert probe.tree(alice["workspace_key"]) == {"who": b"alice"}
    assert probe.tree(bob["workspace_key"]) == {"who": b"bob"}
    by_id = service.status(workspace, logical_repo_id="git:aaaaaaaaaaaaaaaa").json()
    assert by_id["workspace_key"] == alice["workspace_key"]
    assert service.status(workspace).json()["last_sequence"] == 1


def test_a_path_alone_follows_its_latest_committed_upload_whatever_its_identity(
    service: ServiceProcess, workspace: str
) -> None:
    """curl without a repo id, then a client with one, then curl again: status by path
    always shows the workspace the latest committed upload went to; a refused upload
    with another identity moves nothing."""
    def key_by_path() -> str:
        return str(service.status(workspace).json()["workspace_key"])

    plain = service.upload(BundleBuilder().created("a", b"1").build(), workspace).json()
    assert key_by_path() == plain["workspace_key"]
    client = service.upload(BundleBuilder().created("a", b"2").build(), workspace,
                            logical_repo_id="git:cccccccccccccccc").json()
    assert client["workspace_key"] != plain["workspace_key"] and key_by_path() == client["workspace_key"]
    again = service.upload(BundleBuilder().created("b", b"3").build(), workspace).json()
    assert again["workspace_key"] == plain["workspace_key"] and again["sequence_number"] == 2
    assert key_by_path() == plain["workspace_key"]
    refused = service.upload(BundleBuilder().created("a", b"4").build(), workspace, sequence_number="9",
                             logical_repo_id="git:cccccccccccccccc")
    assert refused.status_code == 409 and key_by_path() == plain["workspace_key"]


def test_unknown_endpoint_and_wrong_method(service: ServiceProcess) -> None:
    import requests

    missing = requests.get(service.url + "/api/v1/nope", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    wrong = requests.get(service.url + "/api/v1/delta/upload", timeout=10)
    assert wrong.status_code == 405 and wrong.json()["success"] is False
    assert wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert wrong.headers["Allow"] == "POST"


def test_every_get_endpoint_answers_head_and_nothing_else(service: ServiceProcess) -> None:
    import requests

    ws = "workspace_path=/work/head"
    paths = {"/health": 200, "/ready": 200, "/health?ready=1": 200, "/metrics": 200, "/openapi.json": 200,
             f"/api/v1/delta/status?{ws}": 200, f"/api/v1/delta/manifest?{ws}": 200,
             f"/api/v1/delta/bundles/{uuid.uuid4()}?{ws}": 404, "/api/v1/delta/status": 400}
    for path, status in paths.items():
        get = requests.get(service.url + path, timeout=30)
        head = requests.head(service.url + path, timeout=30)
        assert get.status_code == head.status_code == status, (path, get.text)
        assert head.content == b"" and head.headers["Content-Type"] == get.headers["Content-Type"]
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            refused = requests.request(method, service.url + path, data=b"x", timeout=10)
            assert refused.status_code == 405, (method, path, refused.text)
            assert refused.headers["Allow"] == "GET, HEAD"
            assert refused.json() == {"success": False, "error": {
                "code": "METHOD_NOT_ALLOWED", "message": "use GET or HEAD for this endpoint"}}


def test_a_file_becomes_a_folder_and_back_and_conflicts_are_reported(
    service: ServiceProcess, probe: StorageProbe, workspace: str
) -> None:
    ws = service.upload(BundleBuilder().created("a", b"file a").created("d/x", b"x").build(),
                        workspace).json()["workspace_key"]
    swap = service.upload(BundleBuilder().deleted("a").created("a/b", b"now a folder")
                          .deleted("d/x").created("d", b"now a file").build(), workspace)
    assert swap.status_code == 200, swap.text
    assert probe.tree(ws) == {"a/b": b"now a folder", "d": b"now a file"}
    clash = service.upload(BundleBuilder().created("d/inner", b"?").created("a", b"?")
                           .created("ok.txt", b"fine").build(), workspace).json()
    assert clash["success"] is True
    assert clash["processed_operations"]["failed"] == 2
    assert sorted(f["path"] for f in clash["failures"]) == ["a", "d/inner"]
    assert probe.tree(ws) == {"a/b": b"now a folder", "d": b"now a file", "ok.txt": b"fine"}
