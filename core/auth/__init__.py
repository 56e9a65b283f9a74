"""Authentication: API keys, JWTs, and the existing clients' sessions and users.

    core.auth.authenticator  Authenticator: a token -> Identity (tenant), per AUTH_MODE
    core.auth.tokens         API keys (SHA-256 digests) and JWT verification
    core.auth.sessions       session records by the digest of their id; sliding expiry
    core.auth.users          user records; the write-once first-user window
    core.auth.passwords      argon2id hashing (argon2-cffi)
    core.auth.throttle       failed-login counters per user name and address, in storage
    core.auth.service        the /auth/* endpoints: status, logins, user creation
    core.auth.records        the stored records and request bodies (pydantic)

Users and sessions live in the object store (docs/storage-layout.md "Auth
records"), as every other record: instances share nothing else. Tokens,
passwords and session ids are never logged or echoed.
"""

from __future__ import annotations

from core.auth.authenticator import Authenticator
from core.auth.records import Identity
from core.auth.service import AuthService
from core.auth.throttle import LoginThrottle
from core.auth.tokens import TENANT, hash_key
from core.auth.users import Users
from core.config import Settings
from core.errors import Unauthorized
from core.storage import ObjectStore

__all__ = ["TENANT", "AuthService", "Authenticator", "Identity", "Unauthorized", "build_auth_service",
           "hash_key"]


def build_auth_service(settings: Settings, store: ObjectStore, authenticator: Authenticator) -> AuthService:
    """The /auth/* logic over the authenticator's sessions (none with AUTH_MODE=none)."""
    if authenticator.sessions is None:
        return AuthService(settings, None, None, None)
    throttle = LoginThrottle(store, settings.auth_login_max_failures, settings.auth_login_window_secs)
    return AuthService(settings, authenticator.sessions, Users(store), throttle)
