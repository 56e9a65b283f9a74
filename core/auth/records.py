"""The stored auth records (docs/storage-layout.md "Auth records") and the request bodies.

Records are frozen pydantic models with a `format` number; request bodies are
strict (a number where a string belongs is refused, never coerced) and ignore
fields they do not know, as the existing clients send extra ones (`client`,
`workspace`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.names import MAX_TENANT, TENANT_RULE, is_tenant

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")  # use fullmatch
SHORT = 1024  # longest token, password or client name read


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class UserRecord(_Record):
    """`auth/users/<name>.json`: written once with put_if_absent; the hash may be upgraded by CAS."""

    format: Literal[1] = 1
    user_id: str
    username: str
    tenant: str
    admin: bool
    password_hash: str  # argon2id, PHC string (core.auth.passwords)
    created_at: str


class FirstUser(_Record):
    """`auth/first-user.json`: write-once; whoever writes it is the one first user."""

    format: Literal[1] = 1
    username: str
    created_at: str


class SessionRecord(_Record):
    """`auth/sessions/<sha256 of the id>.json`; `expires_at` 0 never expires."""

    format: Literal[1] = 1
    user_id: str
    username: str | None  # None: a shared-token login
    tenant: str
    admin: bool
    created_at: float
    expires_at: float
    client: str | None = None


class FailureWindow(_Record):
    """`auth/login-failures/<kind>-<hex>.json`: failed logins since `window_started`."""

    format: Literal[1] = 1
    window_started: float
    failures: int


@dataclass(frozen=True)
class Identity:
    """Who a credential belongs to. `user_id` is None for API keys and JWTs."""

    tenant: str
    user_id: str | None = None
    username: str | None = None
    admin: bool = False


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)


class TokenLogin(_Body):
    """POST /auth/login: `{"client", "workspace", "token"}`, as `ctxce auth login` sends it."""

    token: str = Field(min_length=1, max_length=SHORT)
    client: str | None = Field(None, max_length=256)
    workspace: str | None = Field(None, max_length=1024)


class PasswordLogin(_Body):
    """POST /auth/login/password: `{"username", "password", "workspace"?}`."""

    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=SHORT)
    workspace: str | None = Field(None, max_length=1024)
    client: str | None = Field(None, max_length=256)


class NewUser(_Body):
    """POST /auth/users: `{"username", "password"}`; `tenant` and `admin` need an admin."""

    username: str = Field(max_length=128)
    password: str = Field(min_length=8, max_length=SHORT)
    tenant: str | None = Field(None, max_length=MAX_TENANT)
    admin: bool = False

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not USERNAME.fullmatch(value):
            raise ValueError("must be 1-128 letters, digits, '_', '.', '@', '+' or '-'")
        return value

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is not None and not is_tenant(value):
            raise ValueError(f"must be {TENANT_RULE}")
        return value
