"""POST /api/v1/admin/gc and the `gc_sweep` target over real HTTP: who may run a sweep, what it
answers, and that uploads, retries and status go on as documented after it.

Services listen on ports of this test's own range (18100-18199).
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from core.config import Settings
from core.keys import workspace_key
from core.models import UploadRequest
from core.pipeline import Pipeline
from core.storage.filesystem import FilesystemStore
from tests.support.bundles import BundleBuilder
from tests.support.service import ServiceProcess

GC = "/api/v1/admin/gc"
SHARED = "shared-token-for-gc-tests"
ADMIN_TOKEN = "admin-token-for-gc-tests-0123456789"
WORKSPACE = "/work/gc"
_ports = itertools.count(18100)


def start(root: Path, target: str = "service", **env: str) -> ServiceProcess:
    root.mkdir(parents=True, exist_ok=True)
    base = {"WORK_DIR": str(root / "storage"), "INDEXING_ENABLED": "false",
            "RETENTION_KEEP_SEQUENCES": "1", "RETENTION_MAX_AGE_HOURS": "0"}
    return ServiceProcess({**base, **env}, root / f"{target}.log", target=target, port=next(_ports)).start()


@pytest.fixture(scope="module")
def open_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    running = start(tmp_path_factory.mktemp("gc-open"))
    yield running
    assert running.stop() == 0


def uploaded(service: ServiceProcess, builder: BundleBuilder, **fields: str) -> dict[str, object]:
    answer = service.upload(builder.build(), WORKSPACE, **fields)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_loopback_sweep_answers_what_it_removed(open_service: ServiceProcess) -> None:
    bundles = [BundleBuilder().created("a.py", f"v{v}\n".encode()) for v in range(3)]
    for builder in bundles:
        uploaded(open_service, builder)
    answer = requests.post(open_service.url + GC, timeout=60)
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert summary["success"] is True and summary["workspaces"] == 1
    assert summary["sequences_removed"] == 2
    assert summary["removed"]["raw_bundle"]["objects"] == 2 and summary["removed"]["raw_bundle"]["bytes"] > 0
    assert summary["objects_removed"] == 6 and summary["failed_workspaces"] == 0
    assert uploaded(open_service, bundles[2])["duplicate"] is True, "inside the window"
    came_back = uploaded(open_service, bundles[0])  # outside, unnumbered: a new bundle
    assert came_back["duplicate"] is False and came_back["sequence_number"] == 4
    refused = open_service.upload(BundleBuilder(sequence_number=2).created("b.py", b"b").build(), WORKSPACE)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "SEQUENCE_MISMATCH"
    status = open_service.status(WORKSPACE).json()
    assert status["last_sequence"] == 4 and status["workspace_key"] == workspace_key("", WORKSPACE, None)
    bridge = requests.get(open_service.url + "/bridge/state", params={"workspace": WORKSPACE}, timeout=10)
    assert bridge.status_code == 200 and bridge.json()["last_sequence"] == 4
    files = open_service.manifest(WORKSPACE).json()["files"]
    assert set(files) == {"a.py"}, "the refused numbered bundle wrote nothing"
    metrics = requests.get(open_service.url + "/metrics", timeout=10).text
    assert 'delta_gc_objects_removed_total{kind="raw_bundle"} 2.0' in metrics
    assert 'delta_gc_bytes_removed_total{kind="journal"}' in metrics


def test_only_post_and_a_bounded_body(open_service: ServiceProcess) -> None:
    wrong = requests.get(open_service.url + GC, timeout=10)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    large = requests.post(open_service.url + GC, data=b"x" * (17 * 1024), timeout=10)
    assert large.status_code == 413 and large.json()["error"]["code"] == "REQUEST_TOO_LARGE"
    event = {"specversion": "1.0", "type": "dev.knative.sources.ping", "source": "ping", "id": "1"}
    assert requests.post(open_service.url + GC, json=event, timeout=60).status_code == 200


def test_with_auth_on_only_an_admin_may_sweep(tmp_path: Path) -> None:
    service = start(tmp_path, CTXCE_AUTH_ENABLED="1", CTXCE_AUTH_SHARED_TOKEN=SHARED,
                    CTXCE_AUTH_ADMIN_TOKEN=ADMIN_TOKEN)
    try:
        url = service.url + GC
        nobody = requests.post(url, timeout=10)
        assert nobody.status_code == 401 and nobody.json()["error"]["code"] == "UNAUTHORIZED"
        session = requests.post(service.url + "/auth/login", json={"token": SHARED}, timeout=10).json()
        tenant = requests.post(url, headers={"Authorization": f"Bearer {session['session_id']}"}, timeout=10)
        assert tenant.status_code == 403 and tenant.json()["error"]["code"] == "ADMIN_ONLY"
        user = {"username": "root", "password": "pw-0123456"}
        created = requests.post(service.url + "/auth/users", json=user, timeout=30)
        assert created.status_code == 200, created.text
        admin = requests.post(service.url + "/auth/login/password",
                              json={"username": "root", "password": "pw-0123456"}, timeout=30).json()
        bearer = {"Authorization": f"Bearer {admin['session_id']}"}
        by_session = requests.post(url, headers=bearer, timeout=60)
        assert by_session.status_code == 200, by_session.text
        by_token = requests.post(url, headers={"X-Admin-Token": ADMIN_TOKEN}, timeout=60)
        assert by_token.status_code == 200 and by_token.json()["workspaces"] == 0
        wrong = requests.post(url, headers={"X-Admin-Token": "not-the-admin-token-0123456789"}, timeout=10)
        assert wrong.status_code == 401
    finally:
        assert service.stop() == 0


def test_the_gc_sweep_target_sweeps_on_any_path_and_answers_probes(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    config = Settings(work_dir=str(storage), indexing_enabled=False)
    pipeline = Pipeline(config, FilesystemStore(storage), None)
    for version in range(2):
        bundle = BundleBuilder().created("a.py", f"v{version}\n".encode()).build()
        pipeline.upload(UploadRequest(workspace_path=WORKSPACE), io.BytesIO(bundle))
    service = start(tmp_path, target="gc_sweep")
    try:
        assert requests.get(service.url + "/health", timeout=10).status_code == 200
        answer = requests.post(service.url + "/", json={}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["sequences_removed"] == 1
        ws = workspace_key("", WORKSPACE, None)
        assert [p.name for p in (storage / "workspaces" / ws / "journal").iterdir()] == ["000000000002.json"]
        assert json.loads((storage / "workspaces" / ws / "head.json").read_text())["last_sequence"] == 2
    finally:
        assert service.stop() == 0


def test_settings_default_to_a_window_and_refuse_negatives() -> None:
    defaults = Settings()
    assert (defaults.retention_keep_sequences, defaults.retention_max_age_hours) == (100, 168.0)
    with pytest.raises(ValueError):
        Settings(retention_keep_sequences=-1)
