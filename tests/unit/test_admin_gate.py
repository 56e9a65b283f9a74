"""Who may run maintenance (core/auth/admin.py), with auth off: the peer address decides."""

from __future__ import annotations

import pytest

from core.auth import Authenticator
from core.auth.admin import admit_admin
from core.config import Settings
from core.errors import Forbidden

TOKEN = "an-admin-token-of-32-characters!"


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_peers_are_admitted_with_auth_off(peer: str) -> None:
    settings = Settings()
    admit_admin(settings, Authenticator(settings), None, peer)


@pytest.mark.parametrize("peer", ["10.0.0.7", "::ffff:10.0.0.7", "2001:db8::1", "", None, "localhost"])
def test_other_peers_are_refused_unless_they_bring_the_admin_token(peer: str | None) -> None:
    settings = Settings(ctxce_auth_admin_token=TOKEN)
    with pytest.raises(Forbidden) as refused:
        admit_admin(settings, Authenticator(settings), "not-the-token", peer)
    assert refused.value.code == "ADMIN_ONLY" and refused.value.http_status == 403
    admit_admin(settings, Authenticator(settings), TOKEN, peer)
