"""Stored collection names: one per (tenant, name), never shared, always valid for Qdrant."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidCollection
from core.names import (
    MAX_TENANT,
    is_collection_name,
    is_tenant,
    split_collection,
    stored_collection,
)

# Drawn from a superset of what is allowed, so the property also covers the edges
# (dashes next to each other, at the ends); pairs that are not valid are filtered out.
ALPHABET = "ab-_.9"
tenants = st.text(ALPHABET, min_size=1, max_size=12).filter(is_tenant)
names = st.text(ALPHABET + "-", min_size=1, max_size=12).filter(is_collection_name)
QDRANT_FORBIDDEN = set('<>:"/\\|?*\0\x1f')


@given(tenants, names, tenants, names)
def test_two_pairs_never_share_a_stored_name(t1: str, n1: str, t2: str, n2: str) -> None:
    if (t1, n1) != (t2, n2):
        assert stored_collection(t1, n1) != stored_collection(t2, n2)


@given(tenants, names)
def test_the_stored_name_gives_back_its_pair(tenant: str, name: str) -> None:
    stored = stored_collection(tenant, name)
    assert split_collection(stored) == (tenant, name)
    assert len(stored) <= 255 and not QDRANT_FORBIDDEN & set(stored)


def test_the_reported_collisions_cannot_be_built() -> None:
    for tenant in ("bob--ci", "bob-", "-bob", "alice\n", "", "a" * (MAX_TENANT + 1), "bob/x"):
        assert not is_tenant(tenant), tenant
    assert stored_collection("bob", "ci--x") == "bob--ci--x"  # its only spelling: no tenant "bob--ci"
    with pytest.raises(ValueError):
        stored_collection("bob--ci", "x")
    with pytest.raises(InvalidCollection):
        stored_collection("bob", "-y")  # "bob-" + "y" is refused for the tenant, "-y" for the name


def test_names_of_today_are_stored_as_before() -> None:
    assert stored_collection("", "shop-8d9001d3") == "shop-8d9001d3"  # auth off: the plain name
    assert stored_collection("alice", "myrepo-test") == "alice--myrepo-test"
    assert stored_collection("", "a--b") == "a--b"  # auth off: any valid name, unchanged


@pytest.mark.parametrize("name", ["", "/", "a/b", "../x", "..", ".", "a\0b", "x\n",
                                  "caf\u00e9", "a b", "-x", "_x", "a" * 190, "a:b", "a*"])
def test_collection_names_that_are_none_are_refused(name: str) -> None:
    with pytest.raises(InvalidCollection) as refused:
        stored_collection("", name)
    assert refused.value.code == "INVALID_COLLECTION" and refused.value.http_status == 400
