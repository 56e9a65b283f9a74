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

from tests.support.service import FRAMEWORK, ROOT, free_port


def launch(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "local.serve"], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serves_on_embedded_defaults_and_stops_cleanly(tmp_path: Path, sig: int) -> None:
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
    finally:
        process.send_signal(sig)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert (tmp_path / ".data").is_dir()


@pytest.mark.parametrize(("name", "value"), [
    ("UPLOAD_SERVICE_PORT", "not-a-port"),
    ("MAX_BUNDLE_SIZE_MB", "-3"),
    ("STORAGE_URL", "ftp://somewhere"),
    ("EMBEDDING_MODEL", "no-such/embedding-model"),
])
def test_a_bad_setting_stops_start_up_naming_it(tmp_path: Path, name: str, value: str) -> None:
    process = launch({"WORK_DIR": str(tmp_path), "QDRANT_URL": ":memory:", name: value})
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
