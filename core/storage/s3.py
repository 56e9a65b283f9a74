"""S3 backend (AWS S3, Ceph RGW, MinIO, moto) through boto3.

Conditional writes use S3's own preconditions: `If-None-Match: *` to create and
`If-Match: <etag>` to replace. ETags are kept and sent without quotes, the one
spelling that AWS, moto and Ceph RGW 16 all accept. Tree files carry the SHA-1
of their bytes as user metadata `sha1`, so a HEAD answers "is this content
already there?" without reading the object.

A claim's conditional tree writes go through a second client without botocore's
retries: `core.fence` retries them itself, so that every attempt is one it
admitted inside the lease. Head CAS and records keep botocore's retries (RGW
answers racing conditional PUTs of one key with a bare 500 now and then).
Timeouts are bounded (`request_bound_secs`) so a claim's requests end well
inside its lease. A conditional copy is a download and a conditional PUT: moto
and Ceph RGW 16 ignore CopyObject's destination conditions, and RGW 16 ignores
If-Match on DeleteObject (tested in tests/contract).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.errors import StorageFull, StorageUnavailable, disk_full_is_retryable
from core.storage.base import (
    Expect,
    FolderEntries,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    StoredObject,
    sha1_of_file,
)

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class S3Store:
    """`ObjectStore` over one bucket and key prefix."""

    kind = "s3"
    fences_with_locks = False

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint_url: str | None,
        region: str | None,
        addressing_style: str,
        max_connections: int,
        scratch_dir: Path | None,
        presign_endpoint_url: str | None = None,
        timeout_secs: float = 30.0,
    ) -> None:
        self.bucket = bucket
        self.parallel_io = max(1, max_connections // 2)  # requests in flight per bulk step
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        connect_timeout = min(5.0, timeout_secs)
        # connect, send, answer: each socket step bounded by its timeout, no retry
        self.request_bound_secs = connect_timeout + 2 * timeout_secs
        config = Config(
            s3={"addressing_style": addressing_style},
            retries={"max_attempts": 4, "mode": "standard"},
            max_pool_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=timeout_secs,
            # checksums only where S3 requires them: RGW 16 and GCS refuse the newer defaults
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()
        self.client: Any = session.client(
            "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1", config=config
        )
        self.writer: Any = session.client(
            "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
            config=config.merge(Config(retries={"total_max_attempts": 1})),
        )
        self.endpoint_url = endpoint_url
        # presigned URLs must name an endpoint the client can reach, which may not be ours, and
        # are signed with SigV4: botocore presigns with SigV2 unless told, which AWS refuses for
        # new buckets and regions (RGW and moto take both)
        self.presigner: Any = boto3.session.Session().client(
            "s3", endpoint_url=presign_endpoint_url or endpoint_url, region_name=region or "us-east-1",
            config=config.merge(Config(signature_version="s3v4")))
        self.scratch_dir = scratch_dir or Path(tempfile.gettempdir()) / "delta-upload-scratch"
        self.scratch_dir.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return self.prefix + key

    def ping(self) -> None:
        with _mapped():
            self.client.head_bucket(Bucket=self.bucket)

    def get(self, key: str) -> StoredObject:
        with _mapped(key):
            reply = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            body = reply["Body"].read()
        return StoredObject(body=body, etag=_unquote(reply["ETag"]))

    def download(self, key: str, dest: Path) -> None:
        with _mapped(key), disk_full_is_retryable("scratch folder"):
            self.client.download_file(self.bucket, self._key(key), str(dest))

    def head(self, key: str) -> ObjectInfo | None:
        try:
            with _mapped(key):
                reply = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ObjectNotFound:
            return None
        sha1 = reply.get("Metadata", {}).get("sha1")
        return ObjectInfo(size=reply["ContentLength"], etag=_unquote(reply["ETag"]), sha1=sha1)

    def put(self, key: str, body: bytes) -> str:
        with _mapped(key):
            reply = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body)
        return _unquote(reply["ETag"])

    def put_if_absent(self, key: str, body: bytes) -> str:
        with _mapped(key):
            reply = self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=body, IfNoneMatch="*"
            )
        return _unquote(reply["ETag"])

    def put_if_match(self, key: str, body: bytes, etag: str) -> str:
        try:
            with _mapped(key):
                reply = self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=body, IfMatch=etag
                )
        except ObjectNotFound:
            # S3 (and moto) answer If-Match on a missing key with 404 NoSuchKey;
            # the protocol calls that a lost condition, as the filesystem does.
            raise PreconditionFailed(key) from None
        return _unquote(reply["ETag"])

    def put_file(self, key: str, source: Path, sha1: str, *, consume: bool = False,
                 expect: Expect | None = None) -> None:
        try:
            with _mapped(key), source.open("rb") as body:
                self._client_for(expect).put_object(Bucket=self.bucket, Key=self._key(key), Body=body,
                                                    Metadata={"sha1": sha1}, **_conditions(expect))
        except ObjectNotFound:  # If-Match on a missing key: S3 and moto say 404, RGW 412
            raise PreconditionFailed(key) from None
        if consume:
            source.unlink(missing_ok=True)

    def put_file_if_absent(self, key: str, source: Path, sha1: str) -> bool:
        try:
            with _mapped(key), source.open("rb") as body:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=body,
                    Metadata={"sha1": sha1},
                    IfNoneMatch="*",
                )
        except PreconditionFailed:
            return False
        return True

    def copy(self, source_key: str, dest_key: str, *, expect: Expect | None = None) -> None:
        if expect is not None:
            self._copy_through(source_key, dest_key, expect)
            return
        with _mapped(source_key):
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self._key(dest_key),
                CopySource={"Bucket": self.bucket, "Key": self._key(source_key)},
                MetadataDirective="COPY",
            )

    def _copy_through(self, source_key: str, dest_key: str, expect: Expect) -> None:
        """A conditional copy through a scratch file (see the module docstring)."""
        with disk_full_is_retryable("scratch folder"):
            fd, name = tempfile.mkstemp(prefix="copy-", dir=self.scratch_dir)
        os.close(fd)
        local = Path(name)
        try:
            self.download(source_key, local)
            self.put_file(dest_key, local, sha1_of_file(local), expect=expect)
        finally:
            local.unlink(missing_ok=True)

    def delete(self, key: str, *, expect: Expect | None = None) -> None:
        conditions = {"IfMatch": expect.etag} if expect is not None and expect.etag else {}
        try:
            with _mapped(key):
                self._client_for(expect).delete_object(Bucket=self.bucket, Key=self._key(key), **conditions)
        except ObjectNotFound:  # If-Match on a key already gone: nothing to delete
            return

    def _client_for(self, expect: Expect | None) -> Any:
        """A claim's conditional tree writes are never retried by botocore: a retry is a
        request `core.fence` did not admit. Other writes (head CAS, records) keep retries."""
        return self.client if expect is None else self.writer

    def shared_lock(self, key: str) -> AbstractContextManager[None]:
        return nullcontext()

    def presign_put(self, key: str, expires_s: int) -> str:
        url: str = self.presigner.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=expires_s, HttpMethod="PUT",
        )
        return url

    def relative_key(self, bucket: str, full_key: str) -> str | None:
        if bucket != self.bucket or not full_key.startswith(self.prefix):
            return None
        return full_key[len(self.prefix):]

    def is_folder(self, key: str) -> bool:
        with _mapped():
            reply = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(key) + "/", MaxKeys=1)
        return bool(reply.get("KeyCount", 0))

    def list(self, prefix: str, start_after: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._key(prefix)}
        if start_after:
            params["StartAfter"] = self._key(start_after)
        strip = len(self.prefix)
        with _mapped():
            for page in paginator.paginate(**params):
                for item in page.get("Contents", []):
                    yield item["Key"][strip:]

    def list_folder(self, prefix: str) -> FolderEntries:
        paginator = self.client.get_paginator("list_objects_v2")
        start = len(self._key(prefix))
        files: set[str] = set()
        folders: set[str] = set()
        with _mapped():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix), Delimiter="/"):
                files.update(item["Key"][start:] for item in page.get("Contents", []))
                folders.update(item["Prefix"][start:-1] for item in page.get("CommonPrefixes", []))
        return FolderEntries(files=frozenset(files), folders=frozenset(folders))


def _conditions(expect: Expect | None) -> dict[str, str]:
    if expect is None:
        return {}
    return {"IfMatch": expect.etag} if expect.etag else {"IfNoneMatch": "*"}


def _unquote(etag: str) -> str:
    return etag.strip('"')


class _mapped:
    """Translate botocore errors into the storage protocol's errors."""

    def __init__(self, key: str = "") -> None:
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> Literal[False]:
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _NOT_FOUND or status == "404":
                if code == "NoSuchBucket":
                    raise StorageUnavailable("the storage bucket does not exist") from None
                raise ObjectNotFound(self.key) from None
            if code in _PRECONDITION or status in _PRECONDITION:
                raise PreconditionFailed(self.key) from None
            if code == "QuotaExceeded":  # Ceph RGW: the user's or bucket's quota is used up
                raise StorageFull("the storage bucket's quota is used up; retry once space is freed") from exc
            if status.startswith("5") or code in {"SlowDown", "ServiceUnavailable"}:
                raise StorageUnavailable("object storage answered with an error") from exc
            raise StorageUnavailable(f"object storage refused the request ({code})") from exc
        if isinstance(exc, BotoCoreError):
            raise StorageUnavailable("object storage is unreachable") from exc
        return False
