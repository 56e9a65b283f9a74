"""Who is calling: an API key, a JWT or a session, mapped to a tenant, per AUTH_MODE.

    AUTH_MODE=none     every request is tenant "" (the default; `make run`)
    AUTH_MODE=api_key  API keys (core.auth.tokens), and sessions
    AUTH_MODE=jwt      JWT bearer tokens (core.auth.tokens), and sessions
    AUTH_MODE=session  sessions only (also what CTXCE_AUTH_ENABLED=1 turns on)

A presented token is tried in that order: an API key or JWT first (answered
without storage), then a session id (one read of its record). A token that
is none of them is 401 UNAUTHORIZED, as is an expired session, or one whose
stored tenant is not a tenant id (`core.names.TENANT`: API keys and JWTs are
checked where they are read).
"""

from __future__ import annotations

from core.auth.records import Identity
from core.auth.sessions import Sessions
from core.auth.tokens import ApiKeys, JwtVerifier
from core.config import Settings
from core.errors import Unauthorized
from core.names import is_tenant
from core.storage import ObjectStore


class Authenticator:
    """Maps a presented token to an `Identity`; built once per process."""

    def __init__(self, settings: Settings, store: ObjectStore | None = None) -> None:
        self.mode = settings.auth_mode
        self.settings = settings
        self._keys = ApiKeys(settings.api_keys_file) if self.mode == "api_key" else None
        self._jwt = JwtVerifier(settings) if self.mode == "jwt" else None
        self.sessions = (Sessions(store, settings.ctxce_auth_session_ttl_seconds)
                         if store is not None and settings.auth_enabled else None)

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def tenant(self, token: str | None) -> str:
        return self.identity(token).tenant

    def identity(self, token: str | None) -> Identity:
        if self.mode == "none":
            return Identity(tenant="")
        if not token:
            raise Unauthorized("authentication required: send a session, a bearer token or an API key")
        if self._keys is not None and (tenant := self._keys.tenant(token)) is not None:
            return Identity(tenant=tenant)
        if self._jwt is not None and (tenant := self._jwt.tenant(token)) is not None:
            return Identity(tenant=tenant)
        if self.sessions is not None and (identity := self.sessions.resolve(token)) is not None:
            if not is_tenant(identity.tenant):  # a record from before tenant ids were tightened
                raise Unauthorized("this session's tenant is not a valid tenant id")
            return identity
        raise Unauthorized("invalid credentials" if self.mode == "session" else "invalid API key or session")
