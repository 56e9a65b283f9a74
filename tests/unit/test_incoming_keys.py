"""Property-based: the open events endpoint acts only on keys that `incoming_key` builds.

Anyone can post an event naming any key, so `parse_incoming_key` is the first wall:
it must accept exactly the keys the service hands out in upload URLs (and give back
what they were built from), and nothing else: no `..` or empty segment, no extra
segment, no trailing newline, no token of another shape.
"""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from core.keys import BUNDLE_ID, incoming_key, parse_incoming_key, workspace_key

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None)
TENANTS = st.sampled_from(["", "alice", "bob.ci", "t_1"])
PATHS = st.text(string.ascii_letters + string.digits + "/._- é", min_size=1, max_size=40).map("/{}".format)
BUNDLE_IDS = st.from_regex(BUNDLE_ID, fullmatch=True)
TOKENS = st.text("0123456789abcdef", min_size=32, max_size=32)


@FUZZ
@given(tenant=TENANTS, path=PATHS, bundle_id=BUNDLE_IDS, token=TOKENS)
def test_every_key_handed_out_parses_back_to_what_built_it(tenant: str, path: str, bundle_id: str,
                                                           token: str) -> None:
    ws = workspace_key(tenant, path, None)
    assert parse_incoming_key(incoming_key(ws, bundle_id, token)) == (ws, bundle_id, token)


@FUZZ
@given(key=st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(["incoming", "..", ".", "", "ws-0123456789abcdef", "b1", "x\n",
                              "0" * 32 + ".tar.gz", "%2e%2e", "a/b"]), max_size=6).map("/".join),
))
def test_anything_else_is_refused(key: str) -> None:
    parsed = parse_incoming_key(key)
    if parsed is not None:
        assert key == incoming_key(*parsed)
        assert not {"", ".", ".."} & set(key.split("/")) and "\n" not in key


@FUZZ
@given(bundle_id=BUNDLE_IDS, token=TOKENS,
       damage=st.sampled_from(["/..", "\n", "/extra", ".tar.gz", "X", "/"]), where=st.integers(0, 3))
def test_a_damaged_key_is_refused(bundle_id: str, token: str, damage: str, where: int) -> None:
    ws = workspace_key("", "/work/repo", None)
    parts = incoming_key(ws, bundle_id, token).split("/")
    parts[where] += damage
    damaged = "/".join(parts)
    parsed = parse_incoming_key(damaged)
    assert parsed is None or damaged == incoming_key(*parsed)
