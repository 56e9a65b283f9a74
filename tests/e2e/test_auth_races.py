"""Racing `POST /auth/users` on two service processes sharing one moto S3 bucket.

Each round both instances are asked for the same user at the same moment: the
first round through the open window (no admin token), the others with the admin
token. Exactly one answer is 200 and the other 409 USER_EXISTS, every round.
On a fresh bucket, two different first users at once: exactly one gets in.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.moto_server import create_bucket
from tests.support.service import ServiceProcess

ADMIN_TOKEN = "race-admin-token-0123456789abcdef"
PASSWORD = "correct horse battery"
ROUNDS = 12


def pair(endpoint: str, root: Path) -> tuple[ServiceProcess, ServiceProcess]:
    bucket = f"auth-{uuid.uuid4().hex[:10]}"
    create_bucket(endpoint, bucket)
    env = {"STORAGE_URL": f"s3://{bucket}/svc", "S3_ENDPOINT_URL": endpoint, "SCRATCH_DIR": str(root),
           "INDEXING_ENABLED": "false", "CTXCE_AUTH_ENABLED": "1", "CTXCE_AUTH_ADMIN_TOKEN": ADMIN_TOKEN}
    first = ServiceProcess(env, root / "first.log").start()
    try:
        return first, ServiceProcess(env, root / "second.log").start()
    except Exception:
        first.stop()
        raise


@pytest.fixture
def instances(moto_endpoint: str, tmp_path: Path) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    first, second = pair(moto_endpoint, tmp_path)
    yield first, second
    assert second.stop() == 0 and first.stop() == 0


def at_once(calls: list[tuple[ServiceProcess, dict[str, Any], dict[str, str]]]) -> list[requests.Response]:
    barrier = threading.Barrier(len(calls))
    answers: list[requests.Response | None] = [None] * len(calls)

    def run(index: int) -> None:
        service, body, headers = calls[index]
        barrier.wait()
        answers[index] = requests.post(service.url + "/auth/users", json=body, headers=headers, timeout=60)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def test_one_name_from_two_instances_has_one_winner_every_round(
        instances: tuple[ServiceProcess, ServiceProcess]) -> None:
    first, second = instances
    for round_no in range(ROUNDS):
        headers = {"X-Admin-Token": ADMIN_TOKEN} if round_no else {}  # round 0: the open window
        body = {"username": f"user-{round_no}", "password": PASSWORD}
        answers = at_once([(first, body, headers), (second, body, headers)])
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 409], (round_no, [a.text for a in answers])
        loser = next(a for a in answers if a.status_code == 409)
        assert loser.json()["error"]["code"] == "USER_EXISTS"
    logged_in = requests.post(second.url + "/auth/login/password", timeout=60,
                              json={"username": "user-0", "password": PASSWORD})
    assert logged_in.status_code == 200, logged_in.text


def test_two_first_users_at_once_let_exactly_one_in(
        instances: tuple[ServiceProcess, ServiceProcess]) -> None:
    first, second = instances
    answers = at_once([(first, {"username": "alice", "password": PASSWORD}, {}),
                       (second, {"username": "bob", "password": PASSWORD}, {})])
    assert sorted(a.status_code for a in answers) == [200, 401], [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200).json()
    assert winner["admin"] is True
    status = requests.get(first.url + "/auth/status", timeout=30).json()
    assert status == {"enabled": True, "has_users": True, "session_ttl_seconds": 0}
    loser = "bob" if winner["username"] == "alice" else "alice"
    refused = requests.post(second.url + "/auth/login/password", timeout=60,
                            json={"username": loser, "password": PASSWORD})
    assert refused.status_code == 401
