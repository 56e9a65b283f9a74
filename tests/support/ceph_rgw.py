"""A throw-away Ceph RADOS Gateway (a real S3 implementation) for tests.

`rgw_cluster()` makes sure the Ceph packages are installed (`local/ceph_rgw.sh
install`, once per session), starts a fresh single-node cluster with
`local/ceph_rgw.sh up` on free loopback ports in a new temporary directory,
yields an `RgwEndpoint` and stops the cluster and removes the directory
afterwards. When the packages cannot be installed (no apt-get, not root, no
network to the mirror) it raises `RgwUnavailable` with the reason, which the
fixtures turn into a skip; every other failure is an error that carries the
tail of the script's output and of the RGW log.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.support.workers import machine_lock, worker_slot

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "local" / "ceph_rgw.sh"
REGION = "us-east-1"
OSD_PORTS = 32  # the OSD binds 8 (public, cluster and two heartbeat messengers, v1 + v2)
PORT_BLOCK = 3 + OSD_PORTS  # mon v1, mon v2, rgw, then the OSD's range
FIXED_PORTS_END = 19000  # tests/e2e/test_gc.py and test_admin_console.py listen on 18100-18499


class RgwUnavailable(Exception):
    """Ceph cannot be installed on this machine; the message says why."""


@dataclass(frozen=True)
class RgwEndpoint:
    """A running RGW: its S3 endpoint, the keys of its user, and its state directory."""

    url: str
    access_key: str
    secret_key: str
    ceph_dir: Path

    def client(self) -> Any:
        return boto3.session.Session().client(
            "s3", endpoint_url=self.url, region_name=REGION, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                          connect_timeout=5, read_timeout=30),
        )

    def create_bucket(self, bucket: str) -> None:
        """Create a bucket; if RGW fails, the error tells what its log says."""
        try:
            self.client().create_bucket(Bucket=bucket)
        except (BotoCoreError, ClientError) as exc:
            raise RuntimeError(f"cannot create bucket {bucket} on RGW {self.url}: {exc}\n"
                               f"{rgw_log_tail(self.ceph_dir)}") from exc


_install_failure: RgwUnavailable | None = None
_installed = False


def ensure_installed(timeout: float = 900.0) -> None:
    """Install the Ceph packages if missing; tried once per process, the outcome is kept."""
    global _install_failure, _installed
    if _installed:
        return
    if _install_failure is None:
        # one installer at a time on the machine (xdist workers, other runs): dpkg's lock
        with machine_lock("apt"), tempfile.TemporaryFile() as log:
            try:
                code = _run_script(["install"], os.environ.copy(), log, timeout)
            except subprocess.TimeoutExpired:
                code = None
            output = _tail(log, 2000).strip()
        if code == 0:
            _installed = True
            return
        why = f"timed out after {timeout:.0f}s" if code is None else f"exit {code}"
        _install_failure = RgwUnavailable(f"local/ceph_rgw.sh install failed ({why}): {output}")
    raise _install_failure


@contextmanager
def rgw_cluster(access_key: str = "testing", secret_key: str = "testing",
                start_timeout: float = 120.0, attempts: int = 2) -> Iterator[RgwEndpoint]:
    """A fresh Ceph cluster with RGW for the duration of the block.

    The state lives in a short temporary directory, not pytest's tmp_path: Ceph's
    admin sockets are Unix sockets, whose paths may not exceed 107 bytes. A start
    that fails (another process may take a port between picking and binding) is
    tried again on other ports, `attempts` times in all.
    """
    ensure_installed()
    root = Path(tempfile.mkdtemp(prefix="ceph-rgw-"))
    try:
        endpoint = None
        for attempt in range(1, attempts + 1):
            try:
                endpoint = _start(root / f"ceph{attempt}", access_key, secret_key, start_timeout)
                break
            except RuntimeError:
                if attempt == attempts:
                    raise
        assert endpoint is not None
        yield endpoint
    finally:
        for ceph_dir in root.glob("ceph*"):
            _stop(ceph_dir)
        shutil.rmtree(root, ignore_errors=True)


def _start(ceph_dir: Path, access_key: str, secret_key: str, timeout: float) -> RgwEndpoint:
    base = free_port_block(PORT_BLOCK)
    env = {**os.environ, "CEPH_DIR": str(ceph_dir), "MON_PORT": str(base), "RGW_PORT": str(base + 2),
           "OSD_PORT_MIN": str(base + 3), "OSD_PORT_MAX": str(base + PORT_BLOCK - 1),
           "S3_ACCESS_KEY": access_key, "S3_SECRET_KEY": secret_key}
    endpoint = RgwEndpoint(f"http://127.0.0.1:{base + 2}", access_key, secret_key, ceph_dir)
    deadline = time.monotonic() + timeout
    with (ceph_dir.parent / f"{ceph_dir.name}-up.log").open("w+b") as log:
        try:
            code: int | None = _run_script(["up"], env, log, timeout)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            why = f"did not finish within {timeout:.0f}s" if code is None else f"failed with exit {code}"
            raise RuntimeError(f"local/ceph_rgw.sh up {why} (ports {base}-{base + PORT_BLOCK - 1}):\n"
                               f"{_tail(log, 3000)}\n{rgw_log_tail(ceph_dir)}")
    _wait_for_s3(endpoint, deadline)
    return endpoint


def _wait_for_s3(endpoint: RgwEndpoint, deadline: float) -> None:
    """Wait until a signed request with the user's keys succeeds (the user is known to RGW)."""
    client = endpoint.client()
    while True:
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"RGW at {endpoint.url} does not serve S3 requests: {exc}\n"
                                   f"{rgw_log_tail(endpoint.ceph_dir)}") from exc
            time.sleep(0.2)


def _stop(ceph_dir: Path) -> None:
    if not ceph_dir.is_dir():
        return
    with tempfile.TemporaryFile() as log, suppress(subprocess.TimeoutExpired):
        _run_script(["down"], {**os.environ, "CEPH_DIR": str(ceph_dir)}, log, 60)


def _run_script(args: list[str], env: dict[str, str], log: Any, timeout: float) -> int:
    """Run local/ceph_rgw.sh with its output in `log` (a file: daemons it starts never hold a
    pipe of ours open); on timeout kill its whole process group and raise TimeoutExpired."""
    process = subprocess.Popen(["bash", str(SCRIPT), *args], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise


def free_port_block(count: int, tries: int = 100) -> int:
    """The first port of `count` consecutive loopback ports that are free now.

    Ports are picked below the kernel's ephemeral range, so that the ports the
    kernel hands out to outgoing connections and to `bind(0)` (moto, the service)
    never land in the cluster's block, and above 19000: some tests listen on fixed
    ports of 18000-18999. Each pytest-xdist worker picks in a slice of those ranges
    of its own, so two workers' clusters never share a port.
    """
    low, high = _ephemeral_range()
    index, workers = worker_slot()
    ranges = []
    for r0, r1 in ((FIXED_PORTS_END, low), (high + 1, 65536)):
        width = (r1 - r0) // workers
        r0, r1 = r0 + index * width, r0 + (index + 1) * width
        if r1 - count > r0:
            ranges.append((r0, r1 - count))
    for _ in range(tries):
        start, stop = random.choice(ranges)
        base = random.randrange(start, stop)
        if all(_port_is_free(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"found no {count} consecutive free ports on 127.0.0.1")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def rgw_log_tail(ceph_dir: Path, lines: int = 30) -> str:
    """The last lines of the RGW's own log and of its stdout/stderr, for error messages."""
    parts = []
    for name in ("client.rgw.a.log", "rgw.stdout"):
        path = ceph_dir / "log" / name
        if path.exists():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {lines} lines) ---\n" + "\n".join(text))
    return "\n".join(parts) or f"(no RGW log in {ceph_dir}/log)"


def _tail(log: Any, limit: int) -> str:
    log.flush()
    log.seek(0)
    return str(log.read()[-limit:].decode("utf-8", "replace"))
