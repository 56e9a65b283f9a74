"""Who may run maintenance (`POST /api/v1/admin/gc`, the `gc` target): an operator or a
scheduler, never a tenant's credential.

    the credential is CTXCE_AUTH_ADMIN_TOKEN               admitted, whatever AUTH_MODE
    auth on:  an admin user's session                      admitted
              any other credential (API key, JWT, user)    403 ADMIN_ONLY
              none, or one that is not valid               401 UNAUTHORIZED
    auth off: the connection's peer is loopback            admitted (a sidecar, a port-forward,
                                                           Knative's queue-proxy: see infra/README.md)
              any other peer                               403 ADMIN_ONLY

The peer is the socket's address, never a header a client sets.
"""

from __future__ import annotations

import hmac
import ipaddress

from core.auth.authenticator import Authenticator
from core.config import Settings
from core.errors import Forbidden

ADMIN_ONLY = "ADMIN_ONLY"


def admit_admin(settings: Settings, authenticator: Authenticator, token: str | None,
                peer: str | None) -> None:
    """Return if the caller may run maintenance; raise `Unauthorized` or `Forbidden` otherwise."""
    configured = settings.ctxce_auth_admin_token
    if token and configured and hmac.compare_digest(token.encode(), configured.encode()):
        return
    if authenticator.enabled:
        if not authenticator.identity(token).admin:
            raise Forbidden("only an admin user or CTXCE_AUTH_ADMIN_TOKEN may do this", code=ADMIN_ONLY)
        return
    if not _loopback(peer):
        raise Forbidden("with AUTH_MODE=none only loopback clients (or CTXCE_AUTH_ADMIN_TOKEN) "
                        "may do this", code=ADMIN_ONLY)


def _loopback(peer: str | None) -> bool:
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback
