"""Tenant ids, collection names, and the one stored (physical) collection name.

    stored_collection("", name)      = name               auth off: today's plain names
    stored_collection(tenant, name)  = f"{tenant}--{name}"

Why two (tenant, name) pairs with a tenant can never meet on one stored name
(docs/storage-layout.md "Collection names"): a tenant id never contains `--`
and never ends with `-` (`TENANT`, checked on the full string wherever a
tenant comes from: API_KEYS_FILE, JWT claims, AUTH_DEFAULT_TENANT, user and
session records). So in `tenant + "--" + name` the *first* `--` starts exactly
after the tenant: an earlier one would lie inside the tenant, or straddle its
last character, which would then be `-`. Splitting there (`split_collection`)
gives back the pair, whatever the name holds; a left inverse, so the mapping is
injective. `bob--ci`, `bob-` and `-y` are not tenant ids, so `bob--ci` + `x`
against `bob` + `ci--x`, or `bob-` + `y` against `bob` + `-y`, cannot arise.

The empty tenant exists only with AUTH_MODE=none, where every caller is that
one tenant, so plain names share a deployment with no tenant's names.

A collection name as a client gives it (`COLLECTION`): 1-189 ASCII letters,
digits, `_`, `.` or `-`, starting with a letter or digit. That keeps every stored
name a valid Qdrant collection name (at most 64 + 2 + 189 = 255 characters, no
`/`, `\\`, NUL or other character Qdrant refuses) and never `.`/`..` (the
embedded Qdrant keeps a folder per collection). Checked with `fullmatch`, as
every pattern here: `$` would let a final newline through.
"""

from __future__ import annotations

import re

from core.errors import InvalidCollection

MAX_TENANT = 64
MAX_COLLECTION = 189  # MAX_TENANT + len("--") + MAX_COLLECTION == 255, Qdrant's limit
SEPARATOR = "--"

# Each '-' is followed by a letter, digit, '_' or '.': never "--", never a trailing '-'.
TENANT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.]|-[A-Za-z0-9_.])*")
COLLECTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
TENANT_RULE = (f"1-{MAX_TENANT} letters, digits, '_', '.' or single '-' between them, "
               "starting with a letter or digit")
COLLECTION_RULE = (f"1-{MAX_COLLECTION} ASCII letters, digits, '_', '.' or '-', "
                   "starting with a letter or digit")


def is_tenant(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TENANT and TENANT.fullmatch(value) is not None


def is_collection_name(value: object) -> bool:
    return (isinstance(value, str) and len(value) <= MAX_COLLECTION
            and COLLECTION.fullmatch(value) is not None)


def check_collection_name(name: str, field: str = "collection_name") -> str:
    """`name` when it is a collection name, else `InvalidCollection` (400)."""
    if not is_collection_name(name):
        raise InvalidCollection(f"{field} must be {COLLECTION_RULE}")
    return name


def stored_collection(tenant: str, name: str) -> str:
    """The physical Qdrant collection of a tenant's collection `name` (checked here)."""
    check_collection_name(name)
    if not tenant:
        return name
    if not is_tenant(tenant):  # never reached from a request: tenants are checked on entry
        raise ValueError("not a tenant id")
    return f"{tenant}{SEPARATOR}{name}"


def check_stored_collection(stored: str, field: str) -> str:
    """A physical name as an operator names it (`delta-upload search --collection`)."""
    try:
        split_collection(stored)
    except ValueError:
        check_collection_name(stored, field)
    return stored


def split_collection(stored: str) -> tuple[str, str]:
    """(tenant, name) of a stored name that has a tenant: the inverse of `stored_collection`."""
    tenant, found, name = stored.partition(SEPARATOR)
    if not found or not is_tenant(tenant) or not is_collection_name(name):
        raise ValueError("not a tenant's stored collection name")
    return tenant, name
