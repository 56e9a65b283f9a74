"""Filesystem backend: a local folder or a mounted CephFS, browsable as plain files.

Keys are paths below the root. Writes go to a temporary sibling and are renamed
into place, so a reader sees the old object or the new one, never a part; a
write that fails removes its temporary. A full disk or quota (ENOSPC, EDQUOT) is
translated here, as `core.errors.StorageFull`: a retryable 503, never a 500.
Conditional writes hold an exclusive `flock` on a per-key lock file under
`<root>/.locks` (CephFS honours flock across clients) while they compare and
rename; a claim's writes hold its head record's lock shared (`shared_lock`), so
the head cannot change hands while one is under way (`core.fence`). A lock is
waited for at most `LOCK_WAIT_SECS`, then `ObjectLocked`. The etag is derived
from the bytes and the inode, so a rewrite with the same bytes still changes it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from core.errors import DirectUploadUnavailable, StorageUnavailable, disk_full_is_retryable
from core.storage.base import (
    Expect,
    FolderEntries,
    ObjectInfo,
    ObjectLocked,
    ObjectNotFound,
    PathConflict,
    PreconditionFailed,
    StoredObject,
    sha1_of_file,
)

TEMP_MARK = ".~tmp~"
LOCK_WAIT_SECS = 2.0
RESERVED_ROOT_NAMES = {".locks", ".scratch"}


class FilesystemStore:
    """`ObjectStore` over a directory tree."""

    kind = "filesystem"
    parallel_io = 1  # local syscalls: threads only add lock traffic
    fences_with_locks = True
    request_bound_secs = 0.0  # a local syscall; a stalled one holds the lock, so nothing can meet it

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.scratch_dir = self.root / ".scratch"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.scratch_dir.mkdir(exist_ok=True)
            (self.root / ".locks").mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"storage folder is not usable: {exc.strerror}") from exc

    def describe(self) -> str:
        return f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / key

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageUnavailable("storage folder is not writable")

    # reads --------------------------------------------------------------
    def get(self, key: str) -> StoredObject:
        try:
            with self._path(key).open("rb") as handle:
                body = handle.read()
                stat = os.fstat(handle.fileno())
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        return StoredObject(body=body, etag=_etag(body, stat))

    def download(self, key: str, dest: Path) -> None:
        try:
            with disk_full_is_retryable("scratch folder"):
                shutil.copyfile(self._path(key), dest)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            stat = path.stat()
            if not path.is_file():
                return None
            sha1 = sha1_of_file(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return ObjectInfo(size=stat.st_size, etag=f"{sha1[:16]}-{stat.st_ino}-{stat.st_mtime_ns}", sha1=sha1)

    def list(self, prefix: str, start_after: str = "") -> Iterator[str]:
        """Keys under `prefix` in byte order (as S3 lists them), after `start_after`."""
        folder, _, stem = prefix.rpartition("/")
        base = self._path(folder) if folder else self.root
        key_base = folder + "/" if folder else ""
        yield from self._walk(base, key_base, stem, start_after, top=not folder)

    def _walk(self, folder: Path, key_base: str, stem: str, after: str, top: bool) -> Iterator[str]:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        ordered = sorted(
            (e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in entries
        )
        for sort_name, entry in ordered:
            if not sort_name.startswith(stem) or TEMP_MARK in entry.name:
                continue
            if top and entry.name in RESERVED_ROOT_NAMES:
                continue
            key = key_base + sort_name
            if sort_name.endswith("/"):
                if not after or key > after or after.startswith(key):
                    yield from self._walk(Path(entry.path), key, "", after, top=False)
            elif key > after:
                yield key

    def list_folder(self, prefix: str) -> FolderEntries:
        files: set[str] = set()
        folders: set[str] = set()
        try:
            entries = list(os.scandir(self._path(prefix)))
        except (FileNotFoundError, NotADirectoryError):
            entries = []
        for entry in entries:
            if TEMP_MARK in entry.name or (not prefix and entry.name in RESERVED_ROOT_NAMES):
                continue
            (folders if entry.is_dir(follow_symlinks=False) else files).add(entry.name)
        return FolderEntries(files=frozenset(files), folders=frozenset(folders))

    def presign_put(self, key: str, expires_s: int) -> str:
        raise DirectUploadUnavailable("the filesystem backend takes uploads only through the service")

    def relative_key(self, bucket: str, full_key: str) -> str | None:
        return None

    def is_folder(self, key: str) -> bool:
        return self._path(key).is_dir()

    # writes -------------------------------------------------------------
    def _parent(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise PathConflict("a file stands where a folder is needed") from None

    @contextmanager
    def _temporary(self, path: Path) -> Iterator[Path]:
        """A temporary sibling of `path` to write and then rename or link into place;
        whatever happens, it is gone afterwards (a write that failed half-way, for lack
        of space say, leaves no part behind)."""
        self._parent(path)
        temp = path.with_name(f"{path.name}{TEMP_MARK}{uuid.uuid4().hex}")
        try:
            yield temp
        finally:
            temp.unlink(missing_ok=True)

    def put(self, key: str, body: bytes) -> str:
        path = self._path(key)
        with _space_mapped(), self._temporary(path) as temp:
            _write(temp, body)
            os.replace(temp, path)
            _fsync_dir(path.parent)
        return self.get(key).etag

    def put_file(self, key: str, source: Path, sha1: str, *, consume: bool = False,
                 expect: Expect | None = None) -> None:
        """A consumed source on the same filesystem is renamed straight into place
        (a complete file, so the rename is as atomic as a temporary's would be)."""
        if expect is not None:
            with self._locked(key):
                self._check(key, expect)
                self.put_file(key, source, sha1, consume=consume)
            return
        path = self._path(key)
        with _space_mapped():
            if consume:
                try:
                    os.chmod(source, 0o644)
                    self._replace(source, path)
                    return
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
            with self._temporary(path) as temp:
                shutil.copyfile(source, temp)
                os.chmod(temp, 0o644)
                self._replace(temp, path)

    def _replace(self, source: Path, path: Path) -> None:
        """`os.replace`, making the parent folders only when they are missing: in a
        bundle of many files most folders exist, and a rename tells which do not."""
        try:
            try:
                os.replace(source, path)
            except FileNotFoundError:
                if not os.path.lexists(source):
                    raise
                self._parent(path)
                os.replace(source, path)
        except IsADirectoryError:
            raise PathConflict("a folder stands where a file is to be written") from None
        except NotADirectoryError:
            raise PathConflict("a file stands where a folder is needed") from None

    def put_file_if_absent(self, key: str, source: Path, sha1: str) -> bool:
        path = self._path(key)
        with _space_mapped(), self._temporary(path) as temp:
            shutil.copyfile(source, temp)
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
        return True

    def put_if_absent(self, key: str, body: bytes) -> str:
        path = self._path(key)
        with _space_mapped(), self._locked(key):
            with self._temporary(path) as temp:
                _write(temp, body)
                try:
                    os.link(temp, path)
                except FileExistsError:
                    raise PreconditionFailed(key) from None
            _fsync_dir(path.parent)
            return self.get(key).etag

    def put_if_match(self, key: str, body: bytes, etag: str) -> str:
        path = self._path(key)
        with _space_mapped(), self._locked(key):
            try:
                current = self.get(key)
            except ObjectNotFound:
                raise PreconditionFailed(key) from None
            if current.etag != etag:
                raise PreconditionFailed(key)
            with self._temporary(path) as temp:
                _write(temp, body)
                os.replace(temp, path)
            _fsync_dir(path.parent)
            return self.get(key).etag

    def copy(self, source_key: str, dest_key: str, *, expect: Expect | None = None) -> None:
        source = self._path(source_key)
        if not source.is_file():
            raise ObjectNotFound(source_key)
        self.put_file(dest_key, source, sha1="", consume=False, expect=expect)

    def delete(self, key: str, *, expect: Expect | None = None) -> None:
        if expect is not None:
            with self._locked(key):
                if self.head(key) is not None:  # a key already gone: nothing to delete, as on S3
                    self._check(key, expect)
                    self.delete(key)
            return
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty by a delete, as S3 has no empty folders; a folder
        that still holds anything (a workspace's records, say) stops the climb."""
        while folder != self.root:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def _check(self, key: str, expect: Expect) -> None:
        current = self.head(key)
        if (current.etag if current else None) != expect.etag:
            raise PreconditionFailed(key)

    def shared_lock(self, key: str) -> AbstractContextManager[None]:
        return self._locked(key, shared=True)

    @contextmanager
    def _locked(self, key: str, *, shared: bool = False) -> Iterator[None]:
        """`flock` on the key's lock file, polled: a holder that is frozen must not
        freeze the caller, which gets `ObjectLocked` after `LOCK_WAIT_SECS`."""
        name = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        with _space_mapped():  # a new lock file needs an inode
            handle = (self.root / ".locks" / name).open("a")
        with handle:
            deadline = time.monotonic() + LOCK_WAIT_SECS
            pause = 0.001
            while True:
                try:
                    fcntl.flock(handle.fileno(), mode)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ObjectLocked from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _space_mapped() -> AbstractContextManager[None]:
    """Every write below the root: a full disk or quota is `StorageFull` (503, retry)."""
    return disk_full_is_retryable("storage folder")


def _write(temp: Path, body: bytes) -> None:
    """`body` to a new file, on disk before it is published (a full disk may show only at the fsync)."""
    with temp.open("xb") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())


def _etag(body: bytes, stat: os.stat_result) -> str:
    return f"{hashlib.sha1(body).hexdigest()[:16]}-{stat.st_ino}-{stat.st_mtime_ns}"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
