"""User creation races on every storage backend (filesystem, moto S3, Ceph RGW).

Two writers, each with a store of its own (as two instances have), start the same
creation at the same moment, round after round, each round on a fresh key space:

- two different first users through the open window: exactly one gets in, the
  other is refused (401), and the marker and the one user record agree;
- two creators of one name: exactly one user record, the other `UserExists`;
- failed-login counters written by several instances at once lose no failure.

Who wins is decided by the stores' conditional writes alone, not by how long a hash
takes: the hashes here are argon2id at its smallest cost (tests/e2e/test_auth.py and
test_sessions.py hash at the service's real parameters).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from core.auth import passwords
from core.auth.throttle import LoginThrottle
from core.auth.users import Users
from core.errors import DeltaError, LoginRateLimited, Unauthorized, UserExists
from core.keys import login_failures_key
from core.storage.base import ObjectStore
from tests.contract.test_storage_contract import backend_params, open_backend

ROUNDS = 8
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """argon2id at 64 KiB and one pass instead of 64 MiB and three (~0.1 s a hash, of which
    a round makes up to eight): the rounds race as hard, only each takes less time."""
    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    passwords._decoy_hash.cache_clear()  # the decoy is hashed by the hasher in force
    yield
    passwords._decoy_hash.cache_clear()


def fresh(store: ObjectStore, round_no: int) -> dict[str, str]:
    """Plain parameters of an empty key space of its own for this round."""
    params = backend_params(store)
    if params["kind"] == "filesystem":
        return {**params, "root": str(Path(params["root"]) / f"round-{round_no}")}
    return {**params, "prefix": f"{params['prefix']}/round-{round_no}"}


def race(params: dict[str, str], *calls: Callable[[Users], object]) -> list[object]:
    """Run each call on its own store at the same moment; their results or errors, in order."""
    users = [Users(open_backend(params)) for _ in calls]
    barrier = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = calls[index](users[index])
        except DeltaError as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_two_different_first_users_let_exactly_one_in(store: ObjectStore) -> None:
    for round_no in range(ROUNDS):
        params = fresh(store, round_no)
        outcomes = race(params, lambda u: u.create_first("alice", PASSWORD, "default"),
                        lambda u: u.create_first("bob", PASSWORD, "default"))
        winners = [o for o in outcomes if not isinstance(o, Exception)]
        assert len(winners) == 1, (round_no, outcomes)
        assert sum(isinstance(o, Unauthorized) for o in outcomes) == 1, (round_no, outcomes)
        check = Users(open_backend(params))
        winner = "alice" if outcomes[0] is winners[0] else "bob"
        loser = "bob" if winner == "alice" else "alice"
        assert check.verify(winner, PASSWORD) is not None and check.verify(loser, PASSWORD) is None
        assert check.verify(winner, PASSWORD).admin  # type: ignore[union-attr]


def test_one_name_created_twice_at_once_has_one_winner(store: ObjectStore) -> None:
    for round_no in range(ROUNDS):
        params = fresh(store, round_no)
        first = race(params, lambda u: u.create_first("carol", PASSWORD, "default"),
                     lambda u: u.create_first("carol", "another password", "default"))
        assert sorted(type(o).__name__ for o in first) == ["UserExists", "UserRecord"], (round_no, first)
        later = race(params, lambda u: u.create("dave", PASSWORD, tenant="t1", admin=False),
                     lambda u: u.create("DAVE", PASSWORD, tenant="t2", admin=False))
        assert sum(isinstance(o, UserExists) for o in later) == 1, (round_no, later)
        assert Users(open_backend(params)).has_users()


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x" * 200])
def test_names_that_are_no_user_names_never_reach_a_key(fs_store: ObjectStore, name: str) -> None:
    assert Users(fs_store).verify(name, PASSWORD) is None


def test_concurrent_failed_logins_are_all_counted(store: ObjectStore) -> None:
    """Four instances counting failures of one name at once lose none (read-modify-write by CAS)."""
    params = fresh(store, 99)
    writers, each = 4, 3
    barrier = threading.Barrier(writers)

    def fail(_: int) -> None:
        throttle = LoginThrottle(open_backend(params), max_failures=1000, window_secs=600)
        barrier.wait()
        for _ in range(each):
            throttle.failed(("user", "target"))

    threads = [threading.Thread(target=fail, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stored = open_backend(params).get(login_failures_key("user", "TARGET"))  # names fold case
    assert json.loads(stored.body)["failures"] == writers * each


def test_a_window_of_failures_ends_on_its_own(fs_store: ObjectStore) -> None:
    now = [1000.0]
    throttle = LoginThrottle(fs_store, max_failures=2, window_secs=60, clock=lambda: now[0])
    throttle.failed(("user", "dev"), ("address", "10.0.0.1"))
    throttle.check(("user", "dev"))  # one failure: still allowed
    throttle.failed(("user", "dev"))
    with pytest.raises(LoginRateLimited) as limited:
        throttle.check(("address", "10.0.0.2"), ("user", "dev"))
    assert limited.value.retry_after_s == 60
    throttle.check(("address", "10.0.0.1"))  # the address failed once only
    now[0] += 61
    throttle.check(("user", "dev"))
    throttle.failed(("user", "dev"))  # a new window starts at one
    throttle.check(("user", "dev"))
