"""`delta-upload smoke`: the seed's test_upload_service.py, against a running service.

Checks health, status and the upload of a small sample bundle (to a workspace
of its own, so it never touches real ones), one line per check.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import requests

from core.client.bundles import write_bundle
from core.client.changes import Change

SAMPLE = b'def hello():\n    """Say hello from the smoke test."""\n    return "hello"\n'


def run_smoke(url: str) -> list[tuple[str, bool, str]]:
    base = url.rstrip("/")
    checks: list[tuple[str, bool, str]] = []
    workspace = f"/work/delta-upload-smoke-{uuid.uuid4().hex[:8]}"

    def check(name: str, call: Callable[[], str]) -> None:
        try:
            detail = call()
            checks.append((name, True, str(detail)))
        except Exception as exc:  # noqa: BLE001 - every failure is a failed check
            checks.append((name, False, f"{type(exc).__name__}: {exc}"))

    def health() -> str:
        body = requests.get(base + "/health", timeout=10).json()
        missing = {"status", "timestamp", "version", "qdrant_url", "work_dir"} - set(body)
        assert not missing, f"missing fields {sorted(missing)}"
        return f"{body['status']}, version {body['version']}"

    def status() -> str:
        body = requests.get(base + "/api/v1/delta/status", params={"workspace_path": workspace},
                            timeout=10).json()
        assert body.get("status") == "ready", body
        assert {"workspace_path", "collection_name"} <= set(body), body
        return f"ready, last_sequence {body['last_sequence']}"

    def upload() -> str:
        with tempfile.TemporaryDirectory() as work:
            root = Path(work)
            (root / "hello.py").write_bytes(SAMPLE)
            change = Change("created", "hello.py", size=len(SAMPLE))
            built = write_bundle(root, [change], root, workspace, None)
            with built.path.open("rb") as bundle:
                response = requests.post(
                    base + "/api/v1/delta/upload",
                    data={"workspace_path": workspace, "force": "False"},
                    files={"bundle": (built.path.name, bundle, "application/gzip")}, timeout=120)
        body = response.json()
        assert response.status_code == 200 and body.get("success") is True, body
        return f"sequence {body['sequence_number']}, {body['processed_operations']}"

    check("health", health)
    check("status", status)
    check("upload", upload)
    return checks
