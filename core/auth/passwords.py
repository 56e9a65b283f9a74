"""Password hashing: argon2id through argon2-cffi, at its current default parameters.

`PasswordHasher()` carries argon2-cffi's recommended profile (RFC 9106's low-memory
choice: 64 MiB, 3 passes, 4 lanes in 25.1). Hashes are PHC strings that name
their own parameters, so a hash made with older parameters still verifies and
`needs_rehash` tells when to replace it. Nothing here is hand-rolled.

A user name that does not exist is answered after verifying against a fixed
hash, so a wrong name and a wrong password take the same time.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when `password` matches; a malformed stored hash is a mismatch."""
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether the hash was made with other parameters than the current defaults."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return False


def burn_verification(password: str) -> None:
    """Spend the time of one verification, for a user name that does not exist."""
    verify_password(_decoy_hash(), password)


@cache
def _decoy_hash() -> str:
    return _HASHER.hash("decoy password that matches no real one")
