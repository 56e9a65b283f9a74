"""Validation of workspace-relative paths sent by clients.

A path is accepted only in its one canonical form: POSIX separators, relative,
no empty, `.` or `..` components, no NUL or control characters, no backslash
and no Windows drive. Anything else is refused, never "cleaned up", so that the
path a client sent is exactly the path the server stores.
"""

from __future__ import annotations

import re

from core.errors import InvalidBundle

MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255
_DRIVE = re.compile(r"[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def path_problem(path: object) -> str | None:
    """Why `path` is not a safe workspace-relative path, or None if it is."""
    if not isinstance(path, str) or not path:
        return "must be a non-empty string"
    if _CONTROL.search(path):
        return "contains a control character"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/") or _DRIVE.match(path):
        return "is absolute"
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if len(encoded) > MAX_PATH_BYTES:
        return "is too long"
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return "has an empty, '.' or '..' component"
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            return "has a component that is too long"
    return None


def check_path(path: object, field: str) -> str:
    """Return `path` if it is safe, else raise `InvalidBundle` (UNSAFE_PATH)."""
    problem = path_problem(path)
    if problem is not None:
        shown = repr(path)[:120] if isinstance(path, str) else type(path).__name__
        raise InvalidBundle(f"{field} {shown} {problem}", code="UNSAFE_PATH")
    assert isinstance(path, str)
    return path
