"""`make run`'s launcher: embedded defaults, clean stops, start-up refusals that name the setting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.bundles import BundleBuilder
from tests.support.service import FRAMEWORK, ROOT, free_port


def launch(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "local.serve"], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGTERM, False), (signal.SIGINT, False),
                                            (signal.SIGINT, True)],
                         ids=["SIGTERM", "SIGINT", "Ctrl-C"])
def test_serves_on_embedded_defaults_and_stops_cleanly(tmp_path: Path, sig: int, group: bool) -> None:
    """Ctrl-C signals the whole foreground group (gunicorn's workers too), a supervisor the process."""
    port = free_port()
    process = launch({"WORK_DIR": str(tmp_path / ".data"), "QDRANT_URL": str(tmp_path / "qdrant"),
                      "UPLOAD_SERVICE_HOST": "127.0.0.1", "UPLOAD_SERVICE_PORT": str(port)})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = requests.get(f"http://127.0.0.1:{port}/ready", timeout=5)
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert ready.status_code == 200
        body = ready.json()
        assert body["storage_backend"] == "filesystem" and body["qdrant_mode"] == "embedded"
        assert body["checks"] == {"storage": "ok", "qdrant": "ok"}
        bundle = BundleBuilder().created("app.py", b"def main():\n    return 42\n").build()
        uploaded = requests.post(f"http://127.0.0.1:{port}/api/v1/delta/upload",
                                 data={"workspace_path": "/work/stop", "force": "False"},
                                 files={"bundle": ("b.tar.gz", bundle, "application/gzip")}, timeout=120)
        assert uploaded.status_code == 200 and uploaded.json()["indexing"]["points_upserted"] == 1
    finally:
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert (tmp_path / ".data").is_dir()
    assert "Traceback" not in output and "Exception ignored" not in output, output
    printed = [line for line in output.splitlines() if not line.startswith("{")]  # JSON log lines
    assert len(printed) == 1 and printed[0].startswith("delta-upload: serving on"), printed


@pytest.mark.parametrize(("name", "value"), [
    ("UPLOAD_SERVICE_PORT", "not-a-port"),
    ("MAX_BUNDLE_SIZE_MB", "-3"),
    ("STORAGE_URL", "ftp://somewhere"),
    ("EMBEDDING_MODEL", "no-such/embedding-model"),
    ("WORKERS", "2"),  # with an embedded index folder, which one process can open
])
def test_a_bad_setting_stops_start_up_naming_it(tmp_path: Path, name: str, value: str) -> None:
    process = launch({"WORK_DIR": str(tmp_path), "QDRANT_URL": str(tmp_path / "qdrant"), name: value})
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert name in output


def test_a_single_function_target_refuses_a_bad_setting_too(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(FRAMEWORK), "--source", str(ROOT / "functions" / "main.py"), "--target", "upload",
         "--port", str(free_port())],
        env={**os.environ, "WORK_DIR": str(tmp_path), "LEASE_SECS": "forever"},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "LEASE_SECS" in done.stderr + done.stdout


def test_an_index_folder_of_the_old_embedded_format_stops_start_up_saying_what_to_do(tmp_path: Path) -> None:
    """Folders written before Qdrant Edge (qdrant-client's local mode) are neither read
    nor changed: start-up stops with what to do, and every file stays as it was."""
    from qdrant_client import QdrantClient, models

    old = tmp_path / "qdrant"
    client = QdrantClient(path=str(old))
    client.create_collection("my-collection", vectors_config={},
                             sparse_vectors_config={"lexical": models.SparseVectorParams()})
    client.upsert("my-collection", [models.PointStruct(id=1, vector={"lexical": models.SparseVector(
        indices=[1], values=[1.0])}, payload={"workspace": "w"})])
    client.close()
    before = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    process = launch({"WORK_DIR": str(tmp_path / ".data"), "QDRANT_URL": str(old),
                      "UPLOAD_SERVICE_PORT": str(free_port())})
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0 and "Traceback" not in output, output
    assert "qdrant-client's local mode" in output and f"mv {old} {old}.local-mode" in output
    assert "re-upload" in output
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == before
