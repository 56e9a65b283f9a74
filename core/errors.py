"""The one error tree of the service, and its mapping to HTTP.

    DeltaError                      code                 HTTP
    ├── InvalidRequest              INVALID_REQUEST      400  (and INVALID_JSON, UNKNOWN_EVENT)
    │   └── InvalidCollection       INVALID_COLLECTION   400  (core.names: a collection name that is none)
    ├── InvalidBundle               INVALID_BUNDLE       400  (and the codes below)
    │     UNSAFE_PATH, UNSAFE_MEMBER, MISSING_MEMBER, UNEXPECTED_MEMBER,
    │     DUPLICATE_MEMBER, HASH_MISMATCH, SIZE_MISMATCH
    ├── BundleTooLarge              BUNDLE_TOO_LARGE     413  (and BUNDLE_LIMIT_EXCEEDED)
    ├── RequestTooLarge             REQUEST_TOO_LARGE    413  (a small JSON body: /auth/*, events, upload-url)
    │   ├── TooManyRecords          TOO_MANY_RECORDS     413  (an event request over MAX_EVENT_RECORDS)
    │   └── FormFieldTooLarge       FORM_FIELD_TOO_LARGE 413  (a form field or part count over its cap)
    ├── Unauthorized                UNAUTHORIZED         401  (carries WWW-Authenticate)
    ├── Forbidden                   FORBIDDEN            403
    │   ├── AdminLoopbackOnly       ADMIN_LOOPBACK_ONLY  403  (core.admin: auth off, a remote peer)
    │   └── CsrfFailed              CSRF_FAILED          403  (core.admin: no form token, another origin)
    ├── NotFound                    NOT_FOUND            404
    │   └── AuthDisabled            AUTH_DISABLED        404  (/auth/* with AUTH_MODE=none)
    ├── MethodNotAllowed            METHOD_NOT_ALLOWED   405  (carries Allow)
    ├── NotAcceptable               NOT_ACCEPTABLE       406  (/mcp: an Accept without JSON)
    ├── UnsupportedMediaType        UNSUPPORTED_MEDIA_TYPE 415 (/mcp: a body that is not JSON)
    ├── DirectUploadUnavailable     DIRECT_UPLOAD_UNAVAILABLE 501
    ├── SequenceMismatch            SEQUENCE_MISMATCH    409
    ├── BundleIdConflict            BUNDLE_ID_CONFLICT   409
    ├── UserExists                  USER_EXISTS          409
    ├── RetryLater (carries Retry-After)
    │   ├── WorkspaceDeleting       WORKSPACE_DELETING   409  (core.deletion: the workspace is being deleted)
    │   ├── RateLimited (core.ratelimit) RATE_LIMITED  429
    │   └── LoginRateLimited        LOGIN_RATE_LIMITED   429
    ├── Unavailable (RetryLater; transient)
    │   ├── WorkspaceBusy           WORKSPACE_BUSY       503  (and core.storage.ObjectLocked)
    │   ├── LeaseLost (core.sequences) LEASE_LOST        503  (another instance took the claim over)
    │   ├── StorageUnavailable      STORAGE_UNAVAILABLE  503
    │   │   └── StorageFull         STORAGE_FULL         503  (ENOSPC/EDQUOT: `disk_full_is_retryable`)
    │   └── IndexUnavailable        INDEX_UNAVAILABLE    503
    └── ProcessingError             PROCESSING_ERROR     500

Anything else that escapes a handler is INTERNAL_ERROR (500). Messages never
echo request data beyond the bundle-relative path being refused.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
STORAGE_FULL_RETRY_SECS = 30  # space is freed by a person or a clean-up job, not in a second or two


class DeltaError(Exception):
    """Base of every error the service reports to a client."""

    code = "INTERNAL_ERROR"
    http_status = 500
    bundle_id: str | None = None  # the bundle it concerns, once its manifest was read (for logs)

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def details(self) -> dict[str, Any]:
        """Extra fields for the error object, beyond code and message."""
        return {}

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(DeltaError):
    code = "INVALID_REQUEST"
    http_status = 400


class InvalidCollection(InvalidRequest):
    """A collection name that is not one: permanent, so never a retryable 503 from Qdrant."""

    code = "INVALID_COLLECTION"


class InvalidBundle(DeltaError):
    code = "INVALID_BUNDLE"
    http_status = 400


class BundleTooLarge(DeltaError):
    code = "BUNDLE_TOO_LARGE"
    http_status = 413


class RequestTooLarge(DeltaError):
    """A small JSON body (the /auth/* endpoints) over its cap, refused before it is read."""

    code = "REQUEST_TOO_LARGE"
    http_status = 413


class TooManyRecords(RequestTooLarge):
    """An event request naming more objects than one request may; none of them is processed."""

    code = "TOO_MANY_RECORDS"


class FormFieldTooLarge(RequestTooLarge):
    """A form's text field over Werkzeug's in-memory cap, or too many parts: not the bundle."""

    code = "FORM_FIELD_TOO_LARGE"


class Unauthorized(DeltaError):
    code = "UNAUTHORIZED"
    http_status = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="delta-upload"'}


class Forbidden(DeltaError):
    code = "FORBIDDEN"
    http_status = 403


class NotFound(DeltaError):
    code = "NOT_FOUND"
    http_status = 404


class AuthDisabled(NotFound):
    """The existing clients read a 404 from /auth/* as "auth is off"."""

    code = "AUTH_DISABLED"


class Unprocessable(DeltaError):
    """A well-formed request for something this service will not answer in that form."""

    code = "UNPROCESSABLE"
    http_status = 422


class UserExists(DeltaError):
    code = "USER_EXISTS"
    http_status = 409


class MethodNotAllowed(DeltaError):
    """Carries `Allow`, the methods the endpoint answers (RFC 9110 section 15.5.6)."""

    code = "METHOD_NOT_ALLOWED"
    http_status = 405

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__(f"use {' or '.join(allowed)} for this endpoint")
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class NotAcceptable(DeltaError):
    code = "NOT_ACCEPTABLE"
    http_status = 406


class UnsupportedMediaType(DeltaError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class DirectUploadUnavailable(DeltaError):
    code = "DIRECT_UPLOAD_UNAVAILABLE"
    http_status = 501


class SequenceMismatch(DeltaError):
    code = "SEQUENCE_MISMATCH"
    http_status = 409

    def __init__(self, expected: int, received: int, retry_after_ms: int = 1000) -> None:
        super().__init__(f"expected sequence {expected}, received {received}")
        self.expected = expected
        self.received = received
        self.retry_after_ms = retry_after_ms

    def details(self) -> dict[str, Any]:
        return {
            "expected_sequence": self.expected,
            "received_sequence": self.received,
            "retry_after": self.retry_after_ms,
        }


class Conflict(DeltaError):
    """The request cannot be done in the state the thing it names is in."""

    code = "CONFLICT"
    http_status = 409


class BundleIdConflict(DeltaError):
    code = "BUNDLE_ID_CONFLICT"
    http_status = 409


class ProcessingError(DeltaError):
    code = "PROCESSING_ERROR"
    http_status = 500


class RetryLater(DeltaError):
    """An answer that carries `Retry-After` (and `retry_after` in ms in the body)."""

    def __init__(self, message: str, *, retry_after_s: int = 2, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s

    def details(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after_s * 1000}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class WorkspaceDeleting(RetryLater):
    """The workspace is being deleted (its head is a tombstone, `core.deletion`). Not this
    request's fault, nor a server failure: once the deletion is done, the same upload
    starts a new workspace at sequence 1, so the client may retry after Retry-After."""

    code = "WORKSPACE_DELETING"
    http_status = 409

    def __init__(self, message: str = "this workspace is being deleted; retry to start it anew",
                 *, retry_after_s: int = 5) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class LoginRateLimited(RetryLater):
    """Too many failed logins for one user name or from one address, in the current window."""

    code = "LOGIN_RATE_LIMITED"
    http_status = 429


class Unavailable(RetryLater):
    """Transient: the client (or the event platform) should retry later."""

    code = "SERVICE_UNAVAILABLE"
    http_status = 503


class WorkspaceBusy(Unavailable):
    code = "WORKSPACE_BUSY"


class StorageUnavailable(Unavailable):
    code = "STORAGE_UNAVAILABLE"


class StorageFull(StorageUnavailable):
    """No space left, or a quota used up, in storage or scratch. Nothing is committed:
    a claimed bundle stays pending and the retry, once space is freed, finishes it."""

    code = "STORAGE_FULL"

    def __init__(self, message: str, *, retry_after_s: int = STORAGE_FULL_RETRY_SECS) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class IndexUnavailable(Unavailable):
    code = "INDEX_UNAVAILABLE"


@contextmanager
def concerning(bundle_id: str) -> Iterator[None]:
    """Tag a `DeltaError` raised inside with the bundle it concerns (for the log line of
    a refusal); an id already set by an inner block stands."""
    try:
        yield
    except DeltaError as exc:
        exc.bundle_id = exc.bundle_id or bundle_id
        raise


@contextmanager
def disk_full_is_retryable(where: str) -> Iterator[None]:
    """Turn an `OSError` for a full disk or quota (ENOSPC, EDQUOT) raised inside into
    `StorageFull`; any other error passes unchanged. Wraps the filesystem store's writes
    and every write to scratch, so the mapping is made at those boundaries only."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        kind = "quota is used up" if exc.errno == errno.EDQUOT else "has no space left"
        raise StorageFull(f"the {where} {kind}; retry once space is freed") from exc


def error_response(error: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The one table from an exception to (status, wire-format body, headers)."""
    if isinstance(error, DeltaError):
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        body.update(error.details())
        return error.http_status, {"success": False, "error": body}, error.headers()
    internal = {"code": "INTERNAL_ERROR", "message": "internal error; see the service log"}
    return 500, {"success": False, "error": internal}, {}
