"""Who is calling: API keys or JWT bearer tokens, mapped to a tenant.

    AUTH_MODE=none     every request is tenant "" (the default; `make run`)
    AUTH_MODE=api_key  API_KEYS_FILE: {"tenants": {"<tenant>": ["sha256:<hex>", ...]}}
                       keys are stored only as SHA-256 digests and compared in
                       constant time; `delta-upload hash-key` prints a digest
    AUTH_MODE=jwt      HS256 with JWT_SECRET, or RS256/ES256 with the keys of
                       JWT_JWKS_FILE; JWT_AUDIENCE / JWT_ISSUER checked when set;
                       the tenant is the JWT_TENANT_CLAIM claim (default "tenant")

A token arrives as `Authorization: Bearer <token>`, `X-API-Key: <key>`, or the
existing clients' `session` field. Tokens are never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

from core.config import ConfigError, Settings
from core.errors import DeltaError

TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Unauthorized(DeltaError):
    code = "UNAUTHORIZED"
    http_status = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="delta-upload"'}


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class Authenticator:
    """Maps a presented token to a tenant, per `AUTH_MODE`."""

    def __init__(self, settings: Settings) -> None:
        self.mode = settings.auth_mode
        self.settings = settings
        self._keys: list[tuple[bytes, str]] = []
        self._jwks: Any = None
        if self.mode == "api_key":
            self._keys = _load_keys(settings.api_keys_file)
        elif self.mode == "jwt":
            if not (settings.jwt_secret or settings.jwt_jwks_file):
                raise ConfigError("AUTH_MODE=jwt needs JWT_SECRET or JWT_JWKS_FILE")
            if settings.jwt_jwks_file:
                from jwt import PyJWKSet

                try:
                    self._jwks = PyJWKSet.from_json(Path(settings.jwt_jwks_file).read_text())
                except (OSError, ValueError, Exception) as exc:
                    raise ConfigError(f"JWT_JWKS_FILE: cannot read a JWK set ({type(exc).__name__})") from exc

    def tenant(self, token: str | None) -> str:
        if self.mode == "none":
            return ""
        if not token:
            raise Unauthorized("authentication required: send a bearer token or an API key")
        return self._by_key(token) if self.mode == "api_key" else self._by_jwt(token)

    def _by_key(self, token: str) -> str:
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        found = ""
        for digest, tenant in self._keys:  # compare with every key: no early exit to time
            if hmac.compare_digest(presented, digest):
                found = tenant
        if not found:
            raise Unauthorized("invalid API key")
        return found

    def _by_jwt(self, token: str) -> str:
        import jwt

        settings = self.settings
        options: Any = {"require": ["exp"], "verify_aud": bool(settings.jwt_audience)}
        try:
            if self._jwks is not None:
                header = jwt.get_unverified_header(token)
                key = next((k for k in self._jwks.keys if k.key_id == header.get("kid")), None)
                if key is None:
                    raise Unauthorized("token signed with an unknown key")
                claims = jwt.decode(token, key.key, algorithms=["RS256", "ES256", "PS256", "EdDSA"],
                                    audience=settings.jwt_audience, issuer=settings.jwt_issuer,
                                    options=options)
            else:
                claims = jwt.decode(token, settings.jwt_secret or "", algorithms=["HS256"],
                                    audience=settings.jwt_audience, issuer=settings.jwt_issuer,
                                    options=options)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token ({type(exc).__name__})") from None
        tenant = claims.get(settings.jwt_tenant_claim)
        if not isinstance(tenant, str) or not TENANT.match(tenant):
            raise Unauthorized(f"the token's {settings.jwt_tenant_claim!r} claim is not a tenant id")
        return tenant


def _load_keys(path: str | None) -> list[tuple[bytes, str]]:
    if not path:
        raise ConfigError("AUTH_MODE=api_key needs API_KEYS_FILE")
    try:
        tenants = json.loads(Path(path).read_text())["tenants"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"API_KEYS_FILE: not a readable key file ({type(exc).__name__})") from None
    keys = []
    for tenant, digests in tenants.items():
        if not TENANT.match(tenant):
            raise ConfigError(f"API_KEYS_FILE: {tenant[:64]!r} is not a tenant id")
        for digest in digests:
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                raise ConfigError(f"API_KEYS_FILE: keys of {tenant!r} must be sha256:<64 hex>")
            keys.append((bytes.fromhex(digest[7:]), tenant))
    return keys
