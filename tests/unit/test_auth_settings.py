"""How auth is switched on: AUTH_MODE, or the existing service's CTXCE_AUTH_* variables."""

from __future__ import annotations

import pytest

from core.auth import Authenticator
from core.config import Settings, load_settings


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(("given", "mode"), [
    ({}, "none"),
    ({"ctxce_auth_enabled": "1"}, "session"),
    ({"ctxce_auth_enabled": "true"}, "session"),
    ({"ctxce_auth_enabled": "0"}, "none"),
    ({"ctxce_auth_enabled": "1", "auth_mode": "jwt", "jwt_secret": "s" * 32}, "jwt"),  # AUTH_MODE wins
    ({"ctxce_auth_enabled": "1", "auth_mode": "none"}, "none"),
    ({"auth_mode": "session"}, "session"),
])
def test_the_auth_mode_follows_auth_mode_then_ctxce_auth_enabled(given: dict[str, object], mode: str) -> None:
    assert settings(**given).auth_mode == mode


def test_environment_spellings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXCE_AUTH_ENABLED", "1")
    monkeypatch.setenv("CTXCE_AUTH_SESSION_TTL_SECONDS", "3600")
    monkeypatch.setenv("CTXCE_AUTH_SHARED_TOKEN", "a-shared-token")
    loaded = load_settings()
    assert (loaded.auth_mode, loaded.ctxce_auth_session_ttl_seconds) == ("session", 3600)
    assert "a-shared-token" not in repr(loaded)
    assert loaded.auth_default_tenant == "default"


@pytest.mark.parametrize(("name", "value"), [
    ("CTXCE_AUTH_SESSION_TTL_SECONDS", "-1"), ("CTXCE_AUTH_SHARED_TOKEN", "short"),
    ("CTXCE_AUTH_ADMIN_TOKEN", "too-short"), ("AUTH_DEFAULT_TENANT", "../x"),
])
def test_bad_auth_settings_stop_start_up_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                                             value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(Exception, match=name) as refused:
        load_settings()
    assert value not in str(refused.value)  # a bad secret is named, never shown


def test_without_a_store_sessions_are_not_consulted() -> None:
    """Sessions need the store: an authenticator built without one (start-up checks) has none."""
    assert Authenticator(settings(auth_mode="session")).sessions is None
