"""API keys and JWT bearer tokens, each mapped to a tenant.

    AUTH_MODE=api_key  API_KEYS_FILE: {"tenants": {"<tenant>": ["sha256:<hex>", ...]}}
                       keys are stored only as SHA-256 digests and compared in
                       constant time; `delta-upload hash-key` prints a digest
    AUTH_MODE=jwt      HS256 with JWT_SECRET, or the keys of JWT_JWKS_FILE, each for
                       its own algorithm only (its `alg`, else the one its `kty`
                       implies; RS256, ES256, PS256 or EdDSA); `exp` required and,
                       like `nbf`/`iat`, a number; JWT_AUDIENCE / JWT_ISSUER checked
                       when set; the tenant is the JWT_TENANT_CLAIM claim (default
                       "tenant"), a tenant id (core.names.TENANT) on the full string

Each verifier answers a tenant, `None` for a token that is not one of its kind
(so the authenticator may try a session), or raises `Unauthorized` for a token
of its kind that fails (a JWT with a bad signature or an expired one).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

from core.config import ConfigError, Settings
from core.errors import Unauthorized
from core.names import TENANT, TENANT_RULE, is_tenant

__all__ = ["TENANT", "ApiKeys", "JwtVerifier", "hash_key"]

JWKS_ALGORITHMS = ("RS256", "ES256", "PS256", "EdDSA")  # asymmetric only: no HS256 from a JWK set
TIME_CLAIMS = ("exp", "nbf", "iat")
JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeys:
    """The digests of API_KEYS_FILE; a bad file raises `ConfigError` at start-up."""

    def __init__(self, path: str | None) -> None:
        self._keys = _load_keys(path)

    def tenant(self, token: str) -> str | None:
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        found = None
        for digest, tenant in self._keys:  # compare with every key: no early exit to time
            if hmac.compare_digest(presented, digest):
                found = tenant
        return found


class JwtVerifier:
    """HS256 with JWT_SECRET, or the asymmetric keys of JWT_JWKS_FILE."""

    def __init__(self, settings: Settings) -> None:
        if not (settings.jwt_secret or settings.jwt_jwks_file):
            raise ConfigError("AUTH_MODE=jwt needs JWT_SECRET or JWT_JWKS_FILE")
        self.settings = settings
        self._jwks: Any = None
        if settings.jwt_jwks_file:
            from jwt import PyJWKSet

            try:
                self._jwks = PyJWKSet.from_json(Path(settings.jwt_jwks_file).read_text())
            except (OSError, ValueError, Exception) as exc:
                raise ConfigError(f"JWT_JWKS_FILE: cannot read a JWK set ({type(exc).__name__})") from exc

    def tenant(self, token: str) -> str | None:
        if not JWT_SHAPE.fullmatch(token):
            return None  # not a JWT at all: perhaps a session id
        import jwt

        settings = self.settings
        options: Any = {"require": ["exp"], "verify_aud": bool(settings.jwt_audience)}
        try:
            key, algorithm = (self._key(token) if self._jwks is not None
                              else (settings.jwt_secret or "", "HS256"))
            claims = jwt.decode(token, key, algorithms=[algorithm], audience=settings.jwt_audience,
                                issuer=settings.jwt_issuer, options=options)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token ({type(exc).__name__})") from None
        for name in TIME_CLAIMS:  # PyJWT reads them with int(): a string "9999999999" would pass
            value = claims.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise Unauthorized(f"invalid token (the {name!r} claim is not a NumericDate)")
        tenant = claims.get(settings.jwt_tenant_claim)
        if not is_tenant(tenant):
            raise Unauthorized(f"the token's {settings.jwt_tenant_claim!r} claim is not a tenant id")
        return str(tenant)

    def _key(self, token: str) -> tuple[Any, str]:
        """The JWK the token names (`kid`) and the one algorithm that key is for: its own
        `alg`, or the one its type implies (RSA: RS256, EC P-256: ES256, OKP: EdDSA).
        A token signed with any other algorithm (PS256 for an RS256 key, `none`) fails."""
        import jwt

        header = jwt.get_unverified_header(token)
        key = next((k for k in self._jwks.keys if k.key_id == header.get("kid")), None)
        if key is None:
            raise Unauthorized("token signed with an unknown key")
        if key.algorithm_name not in JWKS_ALGORITHMS or key.public_key_use not in (None, "sig"):
            raise Unauthorized("token signed with a key that is not for signatures of an accepted algorithm")
        return key.key, str(key.algorithm_name)


def _load_keys(path: str | None) -> list[tuple[bytes, str]]:
    if not path:
        raise ConfigError("AUTH_MODE=api_key needs API_KEYS_FILE")
    try:
        tenants = json.loads(Path(path).read_text())["tenants"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"API_KEYS_FILE: not a readable key file ({type(exc).__name__})") from None
    keys = []
    for tenant, digests in tenants.items():
        if not is_tenant(tenant):
            raise ConfigError(f"API_KEYS_FILE: {tenant[:64]!r} is not a tenant id ({TENANT_RULE})")
        for digest in digests:
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                raise ConfigError(f"API_KEYS_FILE: keys of {tenant!r} must be sha256:<64 hex>")
            keys.append((bytes.fromhex(digest[7:]), tenant))
    return keys
