"""User records in the object store, and the one open window for the first user.

    auth/first-user.json     write-once marker: the name of the first user
    auth/users/<name>.json   one record per name (case-insensitive), put_if_absent

Creating users (docs/storage-layout.md "Auth records", write rules):

    without admin credentials (the open window)
      1. put_if_absent(first-user.json, {username})
           wins                 -> this name is the first user; go on
           PreconditionFailed   -> read it: the same name (a racing twin, or a retry after
                                   a crash between 1 and 2) goes on; another name: 401
      2. put_if_absent(users/<name>.json, admin=True)
           wins -> created      PreconditionFailed -> 409 USER_EXISTS
    with admin credentials
      2. put_if_absent(users/<name>.json) as above

So two callers racing with two names cannot both get in (one marker), and two
racing with one name get exactly one user (one record): one 200, one 409.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import UTC, datetime

from pydantic import ValidationError

from core.auth import passwords
from core.auth.records import USERNAME, FirstUser, UserRecord
from core.errors import Unauthorized, UserExists
from core.keys import first_user_key, user_key
from core.storage import ObjectNotFound, ObjectStore, PreconditionFailed

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Users:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def has_users(self) -> bool:
        return self.store.head(first_user_key()) is not None

    def create_first(self, username: str, password: str, tenant: str) -> UserRecord:
        """The first user (an admin), while no user exists; 401 once another name holds the window."""
        marker = FirstUser(username=username.casefold(), created_at=_now())
        try:
            self.store.put_if_absent(first_user_key(), marker.model_dump_json().encode())
        except PreconditionFailed:
            if self._first_username() != username.casefold():
                raise Unauthorized("users exist: creating one needs an X-Admin-Token") from None
        return self.create(username, password, tenant=tenant, admin=True)

    def close_window(self, username: str) -> None:
        """Before an admin-created user: the open window is closed from then on (marker kept if set)."""
        marker = FirstUser(username=username.casefold(), created_at=_now())
        with contextlib.suppress(PreconditionFailed):
            self.store.put_if_absent(first_user_key(), marker.model_dump_json().encode())

    def create(self, username: str, password: str, *, tenant: str, admin: bool) -> UserRecord:
        """A new user; `UserExists` when the name (in any letter case) is taken."""
        record = UserRecord(user_id=uuid.uuid4().hex, username=username, tenant=tenant, admin=admin,
                            password_hash=passwords.hash_password(password), created_at=_now())
        try:
            self.store.put_if_absent(user_key(username), record.model_dump_json().encode())
        except PreconditionFailed:
            raise UserExists("that user name is taken") from None
        return record

    def verify(self, username: str, password: str) -> UserRecord | None:
        """The user when the password matches, else None (same time for an unknown name)."""
        if not USERNAME.fullmatch(username):  # never a key built from an unchecked name
            passwords.burn_verification(password)
            return None
        try:
            stored = self.store.get(user_key(username))
            record = UserRecord.model_validate_json(stored.body)
        except (ObjectNotFound, ValidationError):
            passwords.burn_verification(password)
            return None
        if not passwords.verify_password(record.password_hash, password):
            return None
        if passwords.needs_rehash(record.password_hash):
            upgraded = record.model_copy(update={"password_hash": passwords.hash_password(password)})
            try:  # CAS: a concurrent upgrade of the same password is as good as this one
                self.store.put_if_match(user_key(username), upgraded.model_dump_json().encode(), stored.etag)
            except (PreconditionFailed, ObjectNotFound):
                log.debug("password hash upgrade lost a race")
        return record

    def _first_username(self) -> str | None:
        try:
            return FirstUser.model_validate_json(self.store.get(first_user_key()).body).username
        except (ObjectNotFound, ValidationError):
            return None
