"""CSRF tokens of the admin console's forms (README "Admin console").

    token = HMAC-SHA256(deployment secret, browser id NUL session digest)

The browser id is a random value in the console's own cookie (HttpOnly,
SameSite=Strict), set on the first page; the session digest is that of the
signed-in session (empty with auth off and on the sign-in page). A token is
valid only in the browser that holds the cookie and only for that session.

The deployment secret is 32 random bytes in the store (`admin/csrf-secret.json`),
written once by whichever instance needs it first (put_if_absent; the loser
reads the winner's), so every instance of a stateless deployment checks the
same tokens, including with auth off, where there is no session to bind to. A
process-wide random secret would not do: a form served by one instance would be
refused by the next. Reading the bucket gives the secret but no browser id and
no session id, so it forges no token for anyone's browser; the secret keeps a
cookie planted by another port of the same host (cookies ignore ports) from
being paired with a token its planter could compute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets

from core.keys import csrf_secret_key
from core.storage import ObjectNotFound, ObjectStore, PreconditionFailed

BROWSER_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32)


def new_browser_id() -> str:
    return secrets.token_urlsafe(32)


def load_secret(store: ObjectStore) -> bytes:
    """The deployment's secret: read, or written once if there is none yet."""
    key = csrf_secret_key()
    for _ in range(3):
        try:
            return base64.b64decode(json.loads(store.get(key).body)["secret"])
        except ObjectNotFound:
            body = json.dumps({"format": 1, "secret": base64.b64encode(secrets.token_bytes(32)).decode()})
            try:
                store.put_if_absent(key, body.encode())
            except PreconditionFailed:  # another instance wrote it first: read theirs
                continue
    return base64.b64decode(json.loads(store.get(key).body)["secret"])


def token(secret: bytes, browser_id: str, session_id: str | None) -> str:
    session = hashlib.sha256(session_id.encode()).hexdigest() if session_id else ""
    mac = hmac.new(secret, f"{browser_id}\0{session}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def valid(secret: bytes, browser_id: str | None, session_id: str | None, presented: str | None) -> bool:
    if not browser_id or not BROWSER_ID.fullmatch(browser_id) or not presented or len(presented) > 64:
        return False
    return hmac.compare_digest(token(secret, browser_id, session_id).encode(), presented.encode("utf-8"))
