"""Workspace keys and aliases: one per (tenant, identity), whatever the path's spelling."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidRequest
from core.keys import alias_key, normalise_workspace_path, workspace_key
from core.names import is_tenant

NFC = "/work/caf\u00e9"
NFD = unicodedata.normalize("NFD", NFC)


@pytest.mark.parametrize(("spelling", "canonical"), [
    ("/work/b", "/work/b"), ("/work//b/", "/work/b"), ("/work/./b", "/work/b"),
    ("/work/a/../b", "/work/b"), ("/../../work/b", "/work/b"), ("/work/b/..", "/work"),
    ("\\work\\b", "/work/b"), ("/", "/"), (NFD, NFC),
])
def test_one_spelling_per_path(spelling: str, canonical: str) -> None:
    assert normalise_workspace_path(spelling) == canonical
    assert workspace_key("t", spelling, None) == workspace_key("t", canonical, None)
    assert alias_key("t", spelling) == alias_key("t", canonical)


def test_keys_of_canonical_paths_are_those_of_today() -> None:
    assert workspace_key("", "/work/myrepo", None) == "myrepo-30493662271d48f1"  # README's example


def test_a_repo_id_cannot_stand_for_a_path() -> None:
    with pytest.raises(InvalidRequest):
        workspace_key("t", "/work/b", "path:/work/b")


def test_a_nul_cannot_move_the_boundary_between_tenant_and_identity() -> None:
    with pytest.raises(InvalidRequest):
        workspace_key("a\0git:x", "/work/b", "y")
    assert workspace_key("a", "/work/b", "git:x\0y") != workspace_key("a", "/work/b", "git:x")


parts = st.text("ab:\0/-", max_size=6)
tenants = st.text("ab-.", max_size=6).filter(lambda t: t == "" or is_tenant(t))


@given(tenants, parts, tenants, parts)
def test_distinct_tenant_and_identity_pairs_get_distinct_workspace_keys(
        t1: str, i1: str, t2: str, i2: str) -> None:
    repo1, repo2 = "git:" + i1, "git:" + i2
    if (t1, repo1) != (t2, repo2):
        assert workspace_key(t1, "/work/x", repo1) != workspace_key(t2, "/work/x", repo2)
