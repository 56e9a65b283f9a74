"""The /auth/* endpoints' logic, as the existing clients call them (wire-format.md).

    status()          {"enabled", "has_users", "session_ttl_seconds"}
    login_token()     shared token (CTXCE_AUTH_SHARED_TOKEN) -> a session of the default tenant
    login_password()  user name and password -> a session of the user's tenant
    create_user()     open until the first user exists; then X-Admin-Token: an admin's
                      session id, or CTXCE_AUTH_ADMIN_TOKEN

Bodies arrive as bytes already capped by the handler; they are parsed here into
the strict models of `core.auth.records`. Errors never echo what was sent.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.auth.records import Identity, NewUser, PasswordLogin, SessionRecord, TokenLogin
from core.auth.sessions import Sessions
from core.auth.throttle import LoginThrottle
from core.auth.users import Users
from core.config import Settings
from core.errors import AuthDisabled, Forbidden, InvalidRequest, Unauthorized

SHARED_USER_ID = "shared-token"
Body = TypeVar("Body", bound=BaseModel)


def parse_body(model: type[Body], body: bytes) -> Body:
    """A JSON object into `model`; `InvalidRequest` naming only the fields that are wrong."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeError):
        raise InvalidRequest("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        raise InvalidRequest(f"invalid or missing field(s): {', '.join(fields)[:200]}") from None


class AuthService:
    def __init__(self, settings: Settings, sessions: Sessions | None, users: Users | None,
                 throttle: LoginThrottle | None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.users = users
        self.throttle = throttle

    def status(self) -> dict[str, Any]:
        if not self.settings.auth_enabled or self.users is None:
            return {"enabled": False, "has_users": None, "session_ttl_seconds": 0}
        return {"enabled": True, "has_users": self.users.has_users(),
                "session_ttl_seconds": self.settings.ctxce_auth_session_ttl_seconds}

    def login_token(self, body: bytes, address: str) -> dict[str, Any]:
        sessions, _, throttle = self._on()
        login = parse_body(TokenLogin, body)
        throttle.check(("address", address))
        expected = self.settings.ctxce_auth_shared_token
        if not expected or not hmac.compare_digest(login.token.encode(), expected.encode()):
            throttle.failed(("address", address))
            raise Unauthorized("invalid token")
        identity = Identity(tenant=self.settings.auth_default_tenant, user_id=SHARED_USER_ID)
        return _answer(*sessions.create(identity, SHARED_USER_ID, login.client))

    def login_password(self, body: bytes, address: str) -> dict[str, Any]:
        sessions, users, throttle = self._on()
        login = parse_body(PasswordLogin, body)
        subjects = (("address", address), ("user", login.username))
        throttle.check(*subjects)
        user = users.verify(login.username, login.password)
        if user is None:
            throttle.failed(*subjects)
            raise Unauthorized("invalid user name or password")
        identity = Identity(tenant=user.tenant, user_id=user.user_id, username=user.username,
                            admin=user.admin)
        return _answer(*sessions.create(identity, user.user_id, login.client))

    def create_user(self, body: bytes, admin_token: str | None) -> dict[str, Any]:
        _, users, _ = self._on()
        new = parse_body(NewUser, body)
        if admin_token:
            self._require_admin(admin_token)
            users.close_window(new.username)
            user = users.create(new.username, new.password, admin=new.admin,
                                tenant=new.tenant or self.settings.auth_default_tenant)
        else:
            if new.tenant is not None or new.admin:
                raise Forbidden("tenant and admin can only be given with an X-Admin-Token")
            user = users.create_first(new.username, new.password, self.settings.auth_default_tenant)
        return {"user_id": user.user_id, "username": user.username, "tenant": user.tenant,
                "admin": user.admin}

    def _require_admin(self, token: str) -> None:
        configured = self.settings.ctxce_auth_admin_token
        if configured and hmac.compare_digest(token.encode(), configured.encode()):
            return
        identity = self.sessions.resolve(token) if self.sessions is not None else None
        if identity is None:
            raise Unauthorized("the X-Admin-Token is not an admin token or session")
        if not identity.admin:
            raise Forbidden("the X-Admin-Token's user is not an admin")

    def _on(self) -> tuple[Sessions, Users, LoginThrottle]:
        if self.sessions is None or self.users is None or self.throttle is None:
            raise AuthDisabled("authentication is off (AUTH_MODE=none)")
        return self.sessions, self.users, self.throttle


def _answer(session_id: str, record: SessionRecord) -> dict[str, Any]:
    return {"session_id": session_id, "user_id": record.user_id, "expires_at": int(record.expires_at)}
