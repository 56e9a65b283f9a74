"""Storage backends behind one protocol, chosen by `STORAGE_URL`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from core.config import Settings
from core.storage.base import (
    Expect,
    FolderEntries,
    ObjectInfo,
    ObjectLocked,
    ObjectNotFound,
    ObjectStore,
    PathConflict,
    PreconditionFailed,
    StoredObject,
)

__all__ = [
    "Expect",
    "FolderEntries",
    "ObjectInfo",
    "ObjectLocked",
    "ObjectNotFound",
    "ObjectStore",
    "PathConflict",
    "PreconditionFailed",
    "StoredObject",
    "open_store",
]


def open_store(settings: Settings) -> ObjectStore:
    """The backend that `STORAGE_URL` (or `WORK_DIR`) names."""
    url = urlparse(settings.resolved_storage_url)
    scratch = Path(settings.scratch_dir) if settings.scratch_dir else None
    if url.scheme == "s3":
        from core.storage.s3 import S3Store

        if not url.netloc:
            raise ValueError("STORAGE_URL: s3:// needs a bucket name")
        return S3Store(
            url.netloc,
            url.path,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            addressing_style=settings.s3_addressing_style,
            max_connections=settings.s3_max_connections,
            scratch_dir=scratch,
            presign_endpoint_url=settings.s3_presign_endpoint_url,
            timeout_secs=settings.resolved_request_timeout,
        )
    from core.storage.filesystem import FilesystemStore

    return FilesystemStore(Path(unquote(url.path)))
