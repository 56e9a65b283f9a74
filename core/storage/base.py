"""The storage protocol every backend implements, and its errors.

Keys are `/`-separated strings relative to the backend's prefix (see
`core.keys`). Conditional writes are the only synchronisation the service has:

    put_if_absent(key)        succeeds only if no object exists  (S3 If-None-Match: *)
    put_if_match(key, etag)   succeeds only if the object's etag is still `etag`
                              (S3 If-Match); otherwise PreconditionFailed

Backends translate their own errors at the boundary: a missing object is
`ObjectNotFound`, a lost condition is `PreconditionFailed`, anything that makes
storage unreachable is `core.errors.StorageUnavailable`, and a write refused for
lack of space or quota (ENOSPC, EDQUOT, RGW's QuotaExceeded) is its subclass
`core.errors.StorageFull`, with no part of the object left behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

SHA1_CHUNK = 1024 * 1024


class ObjectNotFound(Exception):
    """The key holds no object."""


class PreconditionFailed(Exception):
    """A conditional write lost: the object exists, or its etag changed."""


class PathConflict(Exception):
    """A folder backend cannot hold a file where a folder is, or the reverse."""


@dataclass(frozen=True)
class StoredObject:
    """An object's bytes with the etag to use in a later `put_if_match`."""

    body: bytes
    etag: str


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD tells: size, etag and the SHA-1 of the content."""

    size: int
    etag: str
    sha1: str | None


@dataclass(frozen=True)
class FolderEntries:
    """One level of the key space under a folder prefix: object names and sub-folder names."""

    files: frozenset[str]
    folders: frozenset[str]


class ObjectStore(Protocol):
    """A flat key space with conditional writes; one implementation per backend.

    `head().sha1` is the hex SHA-1 of the object's bytes for objects written
    with `put_file` (S3 keeps it as user metadata, the filesystem derives it
    from the bytes) and may be None for other objects on S3.
    """

    kind: str
    scratch_dir: Path
    parallel_io: int  # how many requests a bulk step may have in flight

    def describe(self) -> str: ...

    def ping(self) -> None: ...

    def get(self, key: str) -> StoredObject: ...

    def download(self, key: str, dest: Path) -> None: ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def put(self, key: str, body: bytes) -> str: ...

    def put_if_absent(self, key: str, body: bytes) -> str: ...

    def put_if_match(self, key: str, body: bytes, etag: str) -> str: ...

    def put_file(self, key: str, source: Path, sha1: str, *, consume: bool = False) -> None: ...

    def put_file_if_absent(self, key: str, source: Path, sha1: str) -> bool: ...

    def copy(self, source_key: str, dest_key: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str, start_after: str = "") -> Iterator[str]: ...

    def list_folder(self, prefix: str) -> FolderEntries:
        """The names directly under `prefix` (which ends with "/"), as S3 lists with
        `Delimiter="/"`: one request a thousand names, whatever lies deeper."""
        ...

    def presign_put(self, key: str, expires_s: int) -> str:
        """A URL that lets its holder PUT this one object until it expires."""
        ...

    def relative_key(self, bucket: str, full_key: str) -> str | None:
        """The protocol key of an object named by a storage event, or None if the
        event is about another bucket or lies outside this store's prefix."""
        ...

    def is_folder(self, key: str) -> bool:
        """Whether any object's key starts with `key + "/"`."""
        ...


def sha1_of_file(path: Path) -> str:
    """Hex SHA-1 of a local file, read in chunks."""
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(SHA1_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha1_of_stream(stream: BinaryIO) -> str:
    digest = hashlib.sha1()
    for chunk in iter(lambda: stream.read(SHA1_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()
