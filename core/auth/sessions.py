"""Sessions the way the existing clients speak them, kept in the object store.

A session id is `secrets.token_urlsafe(32)` (256 random bits). Only its SHA-256
digest is stored, as the key `auth/sessions/<hex>.json`: whoever can read the
bucket cannot use a session from it, and an id is never logged. Every instance
reads the same records, so a session made on one instance works on all.

Lifetime (`CTXCE_AUTH_SESSION_TTL_SECONDS`, 0 = never expire): a session used
with less than half its lifetime left is extended to a full lifetime from now
(sliding). An expired session is refused with 401 and removed (best effort).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable

from pydantic import ValidationError

from core.auth.records import Identity, SessionRecord
from core.errors import Unauthorized
from core.keys import session_key
from core.storage import ObjectNotFound, ObjectStore, PreconditionFailed

log = logging.getLogger(__name__)
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32)


def session_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


class Sessions:
    def __init__(self, store: ObjectStore, ttl_seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self.clock = clock

    def create(self, identity: Identity, user_id: str, client: str | None = None
               ) -> tuple[str, SessionRecord]:
        """A new session for `identity`; returns its id (shown once, to the caller) and record."""
        now = self.clock()
        record = SessionRecord(user_id=user_id, username=identity.username, tenant=identity.tenant,
                               admin=identity.admin, created_at=now,
                               expires_at=now + self.ttl if self.ttl else 0.0, client=client)
        while True:
            session_id = secrets.token_urlsafe(32)
            try:  # a collision of 256 random bits does not happen; if it did, it must not merge two
                self.store.put_if_absent(session_key(session_digest(session_id)),
                                         record.model_dump_json().encode())
                return session_id, record
            except PreconditionFailed:
                continue

    def resolve(self, session_id: str) -> Identity | None:
        """The identity of a live session; None when the id is no session; 401 when expired."""
        if not SESSION_ID.fullmatch(session_id):
            return None
        key = session_key(session_digest(session_id))
        try:
            stored = self.store.get(key)
            record = SessionRecord.model_validate_json(stored.body)
        except ObjectNotFound:
            return None
        except ValidationError:
            log.warning("unreadable session record ignored")
            return None
        now = self.clock()
        if record.expires_at and record.expires_at <= now:
            self._forget(key)
            raise Unauthorized("session expired: log in again")
        if self.ttl and record.expires_at and record.expires_at - now < self.ttl / 2:
            self._extend(key, record, stored.etag, now)
        return Identity(tenant=record.tenant, user_id=record.user_id, username=record.username,
                        admin=record.admin)

    def end(self, session_id: str) -> None:
        """Sign-out: the session's record is removed; an unknown id is nothing to do."""
        if SESSION_ID.fullmatch(session_id):
            self._forget(session_key(session_digest(session_id)))

    def _extend(self, key: str, record: SessionRecord, etag: str, now: float) -> None:
        # Sliding expiry, written only over the version just read:
        #   put_if_match(etag) wins           -> expires_at = now + TTL
        #   PreconditionFailed / not found    -> another instance extended (or removed) it
        #                                        first; this request is served either way,
        #                                        nothing to retry
        extended = record.model_copy(update={"expires_at": now + self.ttl})
        try:
            self.store.put_if_match(key, extended.model_dump_json().encode(), etag)
        except (PreconditionFailed, ObjectNotFound):
            log.debug("session extension lost a race; the other write stands")

    def _forget(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound):
            self.store.delete(key)
