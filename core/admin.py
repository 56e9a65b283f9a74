"""Who may use the admin console and the `/api/v1/admin/*` endpoints, and over which tenants.

    caller                                   scope
    ---------------------------------------  ------------------------------------------
    AUTH_MODE=none, loopback peer            admin of the one tenant "" (all_tenants)
    AUTH_MODE=none, any other peer           403 ADMIN_LOOPBACK_ONLY
    a session of an admin user               every tenant (all_tenants), user = its name
    CTXCE_AUTH_ADMIN_TOKEN (X-Admin-Token)   every tenant, user = "admin-token"
    any other session, API key or JWT        its own tenant only

The peer is the connection's address, never a forwarded header: with auth off the
service trusts the machine it runs on and nobody else. The Flask side lives in
`functions._admin`; this module decides from plain values.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from core.auth.records import Identity
from core.errors import Forbidden

ADMIN_TOKEN_USER = "admin-token"


class AdminLoopbackOnly(Forbidden):
    code = "ADMIN_LOOPBACK_ONLY"


class CsrfFailed(Forbidden):
    """A state-changing request a browser may have been tricked into (core.csrf)."""

    code = "CSRF_FAILED"


@dataclass(frozen=True)
class AdminScope:
    """The tenants a caller of the admin surface may see and change."""

    tenant: str  # the caller's own tenant
    all_tenants: bool  # an admin: every tenant
    user: str | None  # who signed in (a user name), None for auth off, API keys and JWTs

    def may_act_on(self, tenant: str) -> bool:
        return self.all_tenants or tenant == self.tenant


def is_loopback(address: str | None) -> bool:
    """127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6 (::ffff:127.0.0.1)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def loopback_scope(peer: str | None) -> AdminScope:
    """The scope with auth off: the loopback machine is the admin, everyone else is refused."""
    if not is_loopback(peer):
        raise AdminLoopbackOnly(
            "the admin console and API answer only loopback clients while authentication is off "
            "(AUTH_MODE=none): open it on the service's own machine, or turn authentication on "
            "(AUTH_MODE=session, api_key or jwt) and sign in")
    return AdminScope(tenant="", all_tenants=True, user=None)


def identity_scope(identity: Identity) -> AdminScope:
    """An authenticated caller's scope: an admin user sees every tenant, anyone else their own."""
    return AdminScope(tenant=identity.tenant, all_tenants=identity.admin, user=identity.username)


def admin_token_scope(default_tenant: str) -> AdminScope:
    return AdminScope(tenant=default_tenant, all_tenants=True, user=ADMIN_TOKEN_USER)
