"""The client and CLI against a real running service: nothing lost, nothing sent twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from core.client import RemoteUploadClient
from tests.support.proxy import Proxy
from tests.support.service import ServiceProcess

CLI = Path(sys.executable).with_name("delta-upload")


class Server:
    """A service behind a proxy whose URL survives restarts of the service."""

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.env = {"WORK_DIR": str(root / "storage"), "INDEXING_ENABLED": "false", **env}
        self.service = ServiceProcess(self.env, root / "service.log").start()
        self.proxy = Proxy(self.service.port)

    def restart(self) -> None:
        self.service.kill()
        self.service = ServiceProcess(self.env, self.root / "service.log").start()
        self.proxy.upstream_port = self.service.port

    def tree(self, ws: str) -> dict[str, bytes]:
        base = self.root / "storage" / "workspaces" / ws / "tree"
        return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    with running.proxy.running():
        yield running
    running.service.stop()


def make_workspace(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def client(server: Server, workspace: Path, cache: Path, **options: object) -> RemoteUploadClient:
    return RemoteUploadClient(server.proxy.url, workspace, cache_dir=cache, **options)  # type: ignore[arg-type]


def test_first_push_then_exactly_the_edits_rename_and_delete(server: Server, tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "repo", {
        "src/app.py": b"print('v1')\n", "src/util.py": b"def helper(): ...\n",
        "README.md": b"# demo\n", "node_modules/dep/index.js": b"ignored\n",
        "logo.png": b"\x89PNG\x00\x01binary", ".gitignore": b"*.log\n", "debug.log": b"noise\n",
    })
    with client(server, ws, tmp_path / "cache") as sync:
        first = sync.sync()
        assert first.success and first.bundles_sent == 1
        assert first.operations == {"created": 4} and first.skipped_binary == 1
        ws_key = sync.status()["workspace_key"]
        (ws / "src/app.py").write_bytes(b"print('v2')\n")
        (ws / "lib").mkdir()
        (ws / "src/util.py").rename(ws / "lib/util.py")
        (ws / "README.md").unlink()
        second = sync.sync()
        assert second.success and second.bundles_sent == 1
        assert second.operations == {"updated": 1, "moved": 1, "deleted": 1}
        assert sync.sync().bundles_sent == 0
    assert server.tree(ws_key) == {"src/app.py": b"print('v2')\n", "lib/util.py": b"def helper(): ...\n",
                                   ".gitignore": b"*.log\n"}


def test_a_server_dying_before_it_answers_loses_nothing(server: Server, tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "repo", {"a.py": b"a = 1\n"})
    cache = tmp_path / "cache"
    with client(server, ws, cache, retries=0) as sync:
        assert sync.sync().success
        ws_key = sync.status()["workspace_key"]
        (ws / "b.py").write_bytes(b"b = 2\n")
        server.proxy.mode = "swallow"  # the service applies the bundle, the answer never arrives
        failed = sync.sync()
        assert not failed.success and failed.bundles_sent == 0
        assert "b.py" in server.tree(ws_key), "the service did apply it"
        server.proxy.mode = "refuse"  # and then it is down altogether
        (ws / "c.py").write_bytes(b"c = 3\n")
        assert not sync.sync().success
        server.restart()
        server.proxy.mode = "pass"
        delivered = sync.sync()
    assert delivered.success
    assert delivered.bundles_sent == 2, "the pending bundle again (a duplicate), then c.py"
    status = requests.get(server.proxy.url + "/api/v1/delta/status",
                          params={"workspace_path": "/work/repo",
                                  "logical_repo_id": sync.logical_repo_id}, timeout=10).json()
    assert status["last_sequence"] == 3, "the re-sent bundle was not applied twice"
    assert server.tree(ws_key) == local_files(ws)


def test_a_lost_cache_is_rebuilt_from_the_manifest(server: Server, tmp_path: Path) -> None:
    files = {f"pkg/m{i}.py": f"x = {i}\n".encode() for i in range(30)}
    ws = make_workspace(tmp_path / "repo", files)
    with client(server, ws, tmp_path / "cache") as sync:
        assert sync.sync().bundles_sent == 1
    with client(server, ws, tmp_path / "other-cache") as fresh:
        again = fresh.sync()
        assert again.success and again.resynced and again.bundles_sent == 0
        (ws / "pkg/m3.py").write_bytes(b"x = 'changed'\n")
        after = fresh.sync()
        assert after.operations == {"updated": 1}


def test_a_large_change_set_is_split_and_applied_in_order(tmp_path: Path) -> None:
    server = Server(tmp_path, MAX_BUNDLE_SIZE_MB="1")
    with server.proxy.running():
        blobs = {f"blob/{i:02d}.txt": os.urandom(75_000).hex().encode() for i in range(20)}
        ws = make_workspace(tmp_path / "repo", blobs)
        with client(server, ws, tmp_path / "cache") as sync:
            result = sync.sync()
            assert result.success and result.bundles_sent >= 4
            status = sync.status()
            assert status["last_sequence"] == result.bundles_sent
            assert server.tree(status["workspace_key"]) == local_files(ws)
        journal = sorted((tmp_path / "storage/workspaces" / status["workspace_key"] / "journal").iterdir())
        assert [json.loads(p.read_text())["sequence_number"] for p in journal] == list(
            range(1, result.bundles_sent + 1))
    server.service.stop()


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout)


def test_cli_push_status_bundle_and_smoke(server: Server, tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "repo", {"a.py": b"a = 1\n"})
    common = ["--endpoint", server.proxy.url, "--cache-dir", str(tmp_path / "cache")]
    pushed = run_cli("push", str(ws), *common, "--json")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["operations"] == {"created": 1}
    status = json.loads(run_cli("status", str(ws), *common, "--json").stdout)
    assert status["last_sequence"] == 1
    (ws / "b.py").write_bytes(b"b = 2\n")
    out = tmp_path / "next.tar.gz"
    built = run_cli("bundle", str(ws), "-o", str(out), *common, "--json")
    assert json.loads(built.stdout) == {"bundles": [str(out)]}
    listing = subprocess.run(["tar", "tzf", str(out)], capture_output=True, text=True).stdout
    assert "/files/created/b.py" in listing and "/files/created/a.py" not in listing
    smoke = run_cli("smoke", "--url", server.proxy.url)
    assert smoke.returncode == 0 and smoke.stdout.count("ok ") == 3, smoke.stdout
    server.proxy.mode = "refuse"
    down = run_cli("push", str(ws), *common, "--retries", "1")
    assert down.returncode == 1 and "cannot reach" in down.stderr
    assert run_cli("smoke", "--url", server.proxy.url).returncode == 1
    for command in ("push", "watch", "status", "bundle", "smoke", "search"):
        assert run_cli(command, "--help").returncode == 0


def process_state(pid: int) -> str:
    """A live process's signal masks, state and kernel wait channel, and its threads' count."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        fields = ("State", "Threads", "SigBlk", "SigIgn", "SigCgt")
        wanted = [line for line in status if line.startswith(fields)]
        return "; ".join([*wanted, "wchan " + Path(f"/proc/{pid}/wchan").read_text()])
    except OSError as exc:
        return f"no /proc entry: {exc}"


def test_watch_survives_the_server_being_down(server: Server, tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "repo", {"a.py": b"a = 1\n"})
    server.proxy.mode = "refuse"
    watcher = subprocess.Popen([str(CLI), "watch", str(ws), "--endpoint", server.proxy.url,
                                "--cache-dir", str(tmp_path / "cache"), "--interval", "0.2",
                                "--retries", "0", "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert watcher.poll() is None, "watch gave up while the server was down"
        server.proxy.mode = "pass"
        (ws / "b.py").write_bytes(b"b = 2\n")
        deadline = time.monotonic() + 30
        ws_key = None
        status: dict[str, object] = {}
        while time.monotonic() < deadline:
            status = requests.get(server.proxy.url + "/api/v1/delta/status",
                                  params={"workspace_path": "/work/repo"}, timeout=10).json()
            if status["last_sequence"] >= 1:
                ws_key = str(status["workspace_key"])
                if server.tree(ws_key) == local_files(ws):
                    break
            time.sleep(0.2)
        assert ws_key and server.tree(ws_key) == local_files(ws), (status, sorted(local_files(ws)))
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            _, errors = watcher.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            state = process_state(watcher.pid)  # what it was doing, for the next one who meets this
            watcher.kill()
            _, errors = watcher.communicate()
            raise AssertionError(f"watch ignored SIGINT for 30 s ({state}); it wrote: {errors}")  # noqa: B904
    assert watcher.returncode == 0, errors
