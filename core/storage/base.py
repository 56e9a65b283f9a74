"""The storage protocol every backend implements, and its errors.

Keys are `/`-separated strings relative to the backend's prefix (see
`core.keys`). Conditional writes are the only synchronisation the service has:

    put_if_absent(key)        succeeds only if no object exists  (S3 If-None-Match: *)
    put_if_match(key, etag)   succeeds only if the object's etag is still `etag`
                              (S3 If-Match); otherwise PreconditionFailed

Tree writes may carry an `Expect`: the etag the key must still hold, or that it
must hold nothing. It is how a late write of an instance that lost its claim
is refused by the store itself on S3 (`core.fence`); the filesystem fences
with a lock instead (`fences_with_locks`) and honours an `Expect` by comparing
under the key's lock.

Backends translate their own errors at the boundary: a missing object is
`ObjectNotFound`, a lost condition is `PreconditionFailed`, anything that makes
storage unreachable is `core.errors.StorageUnavailable`, and a write refused for
lack of space or quota (ENOSPC, EDQUOT, RGW's QuotaExceeded) is its subclass
`core.errors.StorageFull`, with no part of the object left behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from core.errors import WorkspaceBusy

SHA1_CHUNK = 1024 * 1024


class ObjectNotFound(Exception):
    """The key holds no object."""


class PreconditionFailed(Exception):
    """A conditional write lost: the object exists, or its etag changed."""


class ObjectLocked(WorkspaceBusy):
    """A key's lock stayed held by another writer past the wait a store allows: the
    instance applying this workspace's claim is writing (or frozen while it was)."""

    def __init__(self) -> None:
        super().__init__("another instance is writing to this workspace", retry_after_s=1)


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
class Expect:
    """The state a conditional tree write requires: an object with `etag`, or none."""

    etag: str | None


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
    # True: writes of a claim are fenced by `shared_lock` on its head record (the
    # filesystem's flock); False: by `Expect` conditions and the lease deadline (S3)
    fences_with_locks: bool
    request_bound_secs: float  # the longest one request can stay in flight (timeouts)

    def describe(self) -> str: ...

    def ping(self) -> None: ...

    def get(self, key: str) -> StoredObject: ...

    def download(self, key: str, dest: Path) -> None: ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def put(self, key: str, body: bytes) -> str: ...

    def put_if_absent(self, key: str, body: bytes) -> str: ...

    def put_if_match(self, key: str, body: bytes, etag: str) -> str: ...

    def put_file(self, key: str, source: Path, sha1: str, *, consume: bool = False,
                 expect: Expect | None = None) -> None:
        """Write a file's bytes; with `expect`, only if the key still holds that state
        (else PreconditionFailed)."""
        ...

    def put_file_if_absent(self, key: str, source: Path, sha1: str) -> bool: ...

    def copy(self, source_key: str, dest_key: str, *, expect: Expect | None = None) -> None: ...

    def delete(self, key: str, *, expect: Expect | None = None) -> None:
        """Remove a key (a missing one is fine); with `expect`, only if it still holds
        that etag where the store can check it (Ceph RGW 16 deletes regardless)."""
        ...

    def shared_lock(self, key: str) -> AbstractContextManager[None]:
        """Hold `key`'s lock shared: conditional writes of `key` wait until it is let go.
        A no-op where the store has no locks."""
        ...

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
