"""Several service processes share one storage: restarts, races, exactly-once numbers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import StorageProbe
from tests.support.bundles import BundleBuilder
from tests.support.service import ServiceProcess

INSTANCES = 3


@pytest.fixture(scope="module")
def cluster(backend: tuple[dict[str, str], StorageProbe], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[list[ServiceProcess]]:
    env, _ = backend
    logs = tmp_path_factory.mktemp("cluster-logs")
    instances = [ServiceProcess({**env, "CLAIM_WAIT_SECS": "60"}, logs / f"{i}.log")
                 for i in range(INSTANCES)]
    for instance in instances:
        instance.start()
    yield instances
    for instance in instances:
        assert instance.stop() == 0


def test_server_assigned_numbers_go_to_exactly_one_bundle_each(
    cluster: list[ServiceProcess], probe: StorageProbe, workspace: str
) -> None:
    bundles = [BundleBuilder().created(f"f{i:02d}.py", f"{i}".encode()).build() for i in range(12)]

    def send(i: int) -> dict[str, object]:
        response = cluster[i % INSTANCES].upload(bundles[i], workspace)
        assert response.status_code == 200, response.text
        return dict(response.json())

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(send, range(12)))
    numbers = sorted(int(str(r["sequence_number"])) for r in results)
    assert numbers == list(range(1, 13))
    ws = str(results[0]["workspace_key"])
    assert probe.tree(ws) == {f"f{i:02d}.py": f"{i}".encode() for i in range(12)}
    journal = probe.keys(f"workspaces/{ws}/journal/")
    assert len(journal) == 12
    for instance in cluster:
        assert instance.status(workspace).json()["last_sequence"] == 12


def test_explicit_sequence_race_has_exactly_one_winner(
    cluster: list[ServiceProcess], workspace: str
) -> None:
    rivals = [BundleBuilder().created("contested.py", f"writer {i}".encode()).build()
              for i in range(6)]

    def send(i: int) -> int:
        return cluster[i % INSTANCES].upload(rivals[i], workspace, sequence_number="1").status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = Counter(pool.map(send, range(6)))
    assert codes == {200: 1, 409: 5}
    assert cluster[0].status(workspace).json()["last_sequence"] == 1


def test_the_same_bundle_sent_to_every_instance_at_once_applies_once(
    cluster: list[ServiceProcess], workspace: str
) -> None:
    raw = BundleBuilder().created("once.py", b"1").build()
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda i: cluster[i % INSTANCES].upload(raw, workspace).json(),
                                range(6)))
    assert {r["sequence_number"] for r in replies} == {1}
    assert sum(1 for r in replies if not r["duplicate"]) == 1
    assert cluster[1].status(workspace).json()["last_sequence"] == 1


def test_sequence_survives_a_restart(
    backend: tuple[dict[str, str], StorageProbe], tmp_path: Path, workspace: str
) -> None:
    env, _ = backend
    first = ServiceProcess(env, tmp_path / "first.log").start()
    try:
        for i in range(3):
            assert first.upload(BundleBuilder().created(f"{i}", b"x").build(), workspace).ok
    finally:
        assert first.stop() == 0
    second = ServiceProcess(env, tmp_path / "second.log").start()
    try:
        assert second.status(workspace).json()["last_sequence"] == 3
        nxt = second.upload(BundleBuilder().created("3", b"x").build(), workspace).json()
        assert nxt["sequence_number"] == 4
    finally:
        assert second.stop() == 0
