"""Runs the real service (functions-framework, router target) in a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.workers import worker_slot

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORK = Path(sys.executable).with_name("functions-framework")


def free_port() -> int:
    """A loopback port free now. Each pytest-xdist worker takes only ports of its own blocks
    of 64 (port // 64 % workers == its index: the kernel hands bind(0) ports of one parity),
    so two workers never pick the same one; ports of other blocks stay bound until one of
    ours is found."""
    index, count = worker_slot()
    held: list[socket.socket] = []
    try:
        for _ in range(1000):
            sock = socket.socket()
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port // 64 % count == index:
                return port
        raise RuntimeError("found no free loopback port in this worker's blocks")
    finally:
        for sock in held:
            sock.close()


class ServiceProcess:
    """One service instance on loopback; `env` adds to a clean copy of os.environ. Its index
    is the embedded default, Qdrant Edge, in a folder of its own beside its log (kept
    across restarts of this instance) unless `env` names one."""

    def __init__(self, env: dict[str, str], log_path: Path, target: str = "service",
                 host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        own_index = log_path.parent / f"{log_path.stem}-qdrant-{self.port}"
        self.env = {**os.environ, "QDRANT_URL": str(own_index), **env}
        self.log_path = log_path
        self.target = target
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        # the launcher `make run` and the image use: functions-framework plus the HTTP limits
        command = [sys.executable, "-m", "functions.serve", "--source", str(ROOT / "functions" / "main.py"),
                   "--target", self.target, "--host", self.host, "--port", str(self.port)]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited early: {self.log_path.read_text()[-2000:]}")
            try:
                answer = requests.get(self.url + "/health", timeout=1).status_code
                if answer == 200 or (self.target != "service" and answer < 500):
                    return self
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or its storage is slow
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"service did not answer within {timeout}s")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the service; returns its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    # requests helpers --------------------------------------------------------
    def upload(self, bundle: bytes, workspace_path: str = "/work/myrepo", **fields: Any
               ) -> requests.Response:
        data = {"workspace_path": workspace_path, "force": "False", **fields}
        files = {"bundle": ("bundle.tar.gz", bundle, "application/gzip")}
        return requests.post(self.url + "/api/v1/delta/upload", data=data, files=files, timeout=60)

    def status(self, workspace_path: str = "/work/myrepo", **params: Any) -> requests.Response:
        return requests.get(self.url + "/api/v1/delta/status",
                            params={"workspace_path": workspace_path, **params}, timeout=30)

    def manifest(self, workspace_path: str = "/work/myrepo", **params: Any) -> requests.Response:
        return requests.get(self.url + "/api/v1/delta/manifest",
                            params={"workspace_path": workspace_path, **params}, timeout=30)
