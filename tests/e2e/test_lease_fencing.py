"""An instance that lost its lease writes nothing more: two service processes, real signals.

Two service processes share one store. A applies b1 (files updated, renamed and
deleted) with FAULT_INJECTION=<point>:pause:<b1>, so its worker stops itself with
SIGSTOP at that point. B is then sent b2, which rewrites the same files: B waits
out A's lease, takes b1 over from its raw bundle, commits it and applies b2.
Then A gets SIGCONT. The tree, the manifest and the journal must equal those of
a clean sequential run of b0, b1, b2, with no plan or stash left, and A must
have stopped (503 LEASE_LOST) rather than written.

On the filesystem, A frozen inside a write batch holds the head record's lock:
nobody can take b1 over, so B answers 503 WORKSPACE_BUSY until A is resumed and
finishes b1 itself; B's retry then applies b2. Same end state.

A's storage slow instead of A frozen: A reaches S3 through a loopback proxy that
keeps its tree writes (or their answers) until B is done. A's requests time out
inside its lease; the writes the proxy delivers late are refused by their
conditions.

Indexing is off: two processes cannot share the embedded Qdrant folder, and no
Qdrant server can be installed here; tests/functional/test_fencing.py fences
the Qdrant writes of two pipelines sharing one engine.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.e2e.conftest import StorageProbe, storage_for
from tests.support.bundles import BundleBuilder
from tests.support.proxy import Proxy
from tests.support.service import ServiceProcess

WORKSPACE = "/work/fenced"
FILES = 120
B0, B1, B2 = ("a0a0a0a0-0000-4000-8000-00000000000" + str(n) for n in range(3))
FROZEN_AT = ["mid_plan", "mid_apply", "mid_batch", "after_apply"]
# every point on the filesystem; on S3 (~10 s a run) the points split between moto and RGW
RACES = ([("filesystem", point) for point in FROZEN_AT]
         + [("moto", "mid_plan"), ("moto", "mid_batch"), ("moto", "after_apply"), ("rgw", "mid_apply")])
LEASE = {"filesystem": "2", "moto": "3", "rgw": "5"}  # RGW on a busy 2-core machine answers slower


def content(i: int, version: int) -> bytes:
    return f"def f{i}():\n    return {version * 1000 + i}  # version {version}\n".encode()


def bundles() -> list[bytes]:
    """b0 creates FILES files; b1 updates 100, renames 10 and deletes 5; b2 rewrites
    every file b1 left (renamed ones included)."""
    b0 = BundleBuilder(bundle_id=B0)
    for i in range(FILES):
        b0.created(f"src/m{i}.py", content(i, 0))
    b1 = BundleBuilder(bundle_id=B1)
    for i in range(100):
        b1.updated(f"src/m{i}.py", content(i, 1), previous=content(i, 0))
    for i in range(100, 110):
        b1.moved(f"src/m{i}.py", f"moved/m{i}.py", content_hash_of=content(i, 0))
    for i in range(110, 115):
        b1.deleted(f"src/m{i}.py")
    b2 = BundleBuilder(bundle_id=B2)
    for i in range(100):
        b2.updated(f"src/m{i}.py", content(i, 2), previous=content(i, 1))
    for i in range(100, 110):
        b2.updated(f"moved/m{i}.py", content(i, 2), previous=content(i, 0))
    for i in range(115, FILES):
        b2.updated(f"src/m{i}.py", content(i, 2), previous=content(i, 0))
    return [b0.build(), b1.build(), b2.build()]


BUNDLES = bundles()


def common_env(kind: str) -> dict[str, str]:
    return {"INDEXING_ENABLED": "false", "LEASE_SECS": LEASE[kind],
            "CLAIM_WAIT_SECS": str(2 * int(LEASE[kind]) + 1),  # past A's lease, with room
            "APPLY_BATCH_FILES": "32"}


def upload(service: ServiceProcess, body: bytes) -> requests.Response:
    return service.upload(body, WORKSPACE)


def until_applied(service: ServiceProcess, body: bytes, timeout: float = 60) -> requests.Response:
    """The client's retry loop: 503s are retried after their Retry-After."""
    deadline = time.monotonic() + timeout
    while True:
        answer = upload(service, body)
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(float(answer.headers.get("Retry-After", "1")))


def stopped_worker(service: ServiceProcess, timeout: float = 60) -> int:
    """The pid of the service's process that stopped itself (state T in /proc)."""
    assert service.process is not None
    group = service.process.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            state, _, pgrp = stat.rsplit(")", 1)[1].split()[:3]
            if state == "T" and int(pgrp) == group:
                return int(entry)
        time.sleep(0.02)
    raise AssertionError("the service never froze at its fault point")


def snapshot(probe: StorageProbe, service: ServiceProcess) -> dict[str, Any]:
    manifest = service.manifest(WORKSPACE).json()
    ws = manifest["workspace_key"]
    journal = []
    for key in sorted(probe.keys(f"workspaces/{ws}/journal/")):
        entry = json.loads(probe.read(key))
        journal.append({k: entry[k] for k in ("bundle_id", "sequence_number", "processed_operations",
                                              "failures")})
    head = json.loads(probe.read(f"workspaces/{ws}/head.json"))
    return {
        "tree": probe.tree(ws),
        "manifest": manifest["files"],
        "journal": journal,
        "head": (head["last_sequence"], head["last_bundle_id"], head["pending"]),
        "plans": sorted(probe.keys(f"workspaces/{ws}/plans/")),
    }


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """b0, b1, b2 applied one after the other by one instance."""
    root = tmp_path_factory.mktemp("clean")
    probe = StorageProbe(root=root / "storage")
    service = ServiceProcess({"WORK_DIR": str(root / "storage"), **common_env("filesystem")},
                             root / "service.log").start()
    try:
        assert [upload(service, body).status_code for body in BUNDLES] == [200, 200, 200]
        return snapshot(probe, service)
    finally:
        service.stop()


def two_instances(env: dict[str, str], kind: str, root: Path, a_extra: dict[str, str]
                  ) -> tuple[ServiceProcess, ServiceProcess]:
    shared = {**env, **common_env(kind)}
    a = ServiceProcess({**shared, **a_extra}, root / "a.log").start()
    b = ServiceProcess(shared, root / "b.log").start()
    return a, b


def stop_both(a: ServiceProcess, b: ServiceProcess) -> None:
    for service in (a, b):
        if service.process is not None and service.process.poll() is None:
            os.killpg(service.process.pid, signal.SIGCONT)
        service.stop()


@pytest.mark.parametrize(("kind", "point"), RACES)
def test_a_frozen_instance_writes_nothing_after_a_takeover(
    kind: str, point: str, request: pytest.FixtureRequest, tmp_path: Path, clean: dict[str, Any]
) -> None:
    env, probe = storage_for(kind, request, tmp_path)
    a, b = two_instances(env, kind, tmp_path, {"FAULT_INJECTION": f"{point}:pause:{B1}"})
    try:
        assert upload(a, BUNDLES[0]).status_code == 200
        with ThreadPoolExecutor(1) as pool:
            a_answer = pool.submit(upload, a, BUNDLES[1])
            worker = stopped_worker(a)
            b_first = upload(b, BUNDLES[2])  # A is frozen all along
            os.kill(worker, signal.SIGCONT)
            a_last = a_answer.result(timeout=120)
        b_last = b_first if b_first.status_code == 200 else until_applied(b, BUNDLES[2])
        state = snapshot(probe, b)
    finally:
        stop_both(a, b)
    lock_held = kind == "filesystem" and point == "mid_batch"
    if lock_held:  # A kept the head's lock: nobody could take b1 over, A finished it
        assert b_first.status_code == 503 and b_first.json()["error"]["code"] == "WORKSPACE_BUSY"
        assert a_last.status_code == 200 and a_last.json()["sequence_number"] == 2
    else:  # B took b1 over while A was frozen; A stopped at its next write
        assert b_first.status_code == 200, b_first.text
        assert a_last.status_code == 503 and a_last.json()["error"]["code"] == "LEASE_LOST", a_last.text
        assert a_last.headers["Retry-After"]
    assert b_last.status_code == 200 and b_last.json()["sequence_number"] == 3
    assert state == clean


@pytest.mark.parametrize(("kind", "mode"), [("moto", "hold-writes")])
def test_writes_that_arrive_after_the_lease_take_no_effect(
    kind: str, mode: str, request: pytest.FixtureRequest, tmp_path: Path, clean: dict[str, Any]
) -> None:
    env, probe = storage_for(kind, request, tmp_path)
    with Proxy(urlparse(env["S3_ENDPOINT_URL"]).port or 80).running() as proxy:
        proxy.hold_marker = b"/tree/"
        a, b = two_instances(env, kind, tmp_path, {"S3_ENDPOINT_URL": proxy.url,
                                                   "FAULT_INJECTION": f"mid_apply:pause:{B1}"})
        try:
            assert upload(a, BUNDLES[0]).status_code == 200
            with ThreadPoolExecutor(1) as pool:
                a_answer = pool.submit(upload, a, BUNDLES[1])
                worker = stopped_worker(a)
                proxy.mode = mode  # from now on A's tree writes (or their answers) wait
                os.kill(worker, signal.SIGCONT)
                a_last = a_answer.result(timeout=120)
            held = proxy.held
            b_last = until_applied(b, BUNDLES[2])
            proxy.release()  # A's kept writes reach S3 now, after b1 and b2 were applied
            deadline = time.monotonic() + 30
            while proxy.delivered < proxy.held and time.monotonic() < deadline:
                time.sleep(0.05)
            state = snapshot(probe, b)
        finally:
            stop_both(a, b)
    if mode == "hold-writes":  # every attempt of A's next write is held: A gives up
        assert a_last.status_code == 503, a_last.text
    else:  # A's writes land in time, only their answers are late: A may finish b1 itself
        assert a_last.status_code == 503 or a_last.json()["sequence_number"] == 2, a_last.text
    assert held > 0 and proxy.delivered == proxy.held, (held, proxy.delivered)
    assert b_last.status_code == 200 and b_last.json()["sequence_number"] == 3
    assert state == clean
