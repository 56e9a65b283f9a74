"""A running service per storage backend, and a way to look inside its storage."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.support.ceph_rgw import RgwEndpoint
from tests.support.moto_server import create_bucket
from tests.support.service import ServiceProcess


class StorageProbe:
    """Lists what a service really wrote, independent of the service's code."""

    def __init__(self, root: Path | None = None, endpoint: str = "", bucket: str = "") -> None:
        self.root = root
        self.endpoint = endpoint
        self.bucket = bucket

    def keys(self, prefix: str = "") -> set[str]:
        if self.root is not None:
            found = {
                str(p.relative_to(self.root)) for p in self.root.rglob("*")
                if p.is_file() and not str(p.relative_to(self.root)).startswith((".locks", ".scratch"))
            }
            return {k for k in found if k.startswith(prefix)}
        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="svc/" + prefix)
        return {item["Key"][4:] for page in pages for item in page.get("Contents", [])}

    def read(self, key: str) -> bytes:
        if self.root is not None:
            return (self.root / key).read_bytes()
        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        return bytes(client.get_object(Bucket=self.bucket, Key="svc/" + key)["Body"].read())

    def tree(self, ws: str) -> dict[str, bytes]:
        prefix = f"workspaces/{ws}/tree/"
        return {k[len(prefix):]: self.read(k) for k in self.keys(prefix)}

    def scratch_is_empty(self) -> bool:
        if self.root is None:
            return True
        return not any(p.is_file() for p in (self.root / ".scratch").rglob("*"))


def storage_for(kind: str, request: pytest.FixtureRequest, root: Path) -> tuple[dict[str, str], StorageProbe]:
    """A fresh store of `kind` (filesystem, moto or rgw): service environment and probe."""
    if kind == "filesystem":
        return {"WORK_DIR": str(root / "storage")}, StorageProbe(root=root / "storage")
    bucket = f"ce-{uuid.uuid4().hex[:12]}"
    if kind == "moto":
        endpoint = request.getfixturevalue("moto_endpoint")
        create_bucket(endpoint, bucket)
    else:
        rgw: RgwEndpoint = request.getfixturevalue("rgw_endpoint")
        rgw.create_bucket(bucket)
        endpoint = rgw.url
    env = {"STORAGE_URL": f"s3://{bucket}/svc", "S3_ENDPOINT_URL": endpoint, "SCRATCH_DIR": str(root)}
    return env, StorageProbe(endpoint=endpoint, bucket=bucket)


@pytest.fixture(scope="module", params=["filesystem", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[dict[str, str], StorageProbe]:
    if request.param == "filesystem":
        root = tmp_path_factory.mktemp("storage")
        return {"WORK_DIR": str(root)}, StorageProbe(root=root)
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    create_bucket(endpoint, bucket)
    env = {"STORAGE_URL": f"s3://{bucket}/svc", "S3_ENDPOINT_URL": endpoint,
           "SCRATCH_DIR": str(tmp_path_factory.mktemp("scratch"))}
    return env, StorageProbe(endpoint=endpoint, bucket=bucket)


@pytest.fixture(scope="module")
def service(backend: tuple[dict[str, str], StorageProbe], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[ServiceProcess]:
    env, _ = backend
    log = tmp_path_factory.mktemp("logs") / "service.log"
    instance = ServiceProcess({**env, "CLAIM_WAIT_SECS": "20"}, log).start()
    yield instance
    assert instance.stop() == 0, "the service did not stop cleanly on SIGTERM"


@pytest.fixture
def probe(backend: tuple[dict[str, str], StorageProbe]) -> StorageProbe:
    return backend[1]


@pytest.fixture
def workspace(request: pytest.FixtureRequest) -> str:
    """A workspace path of this test's own, so tests sharing a service never meet."""
    return f"/work/{request.node.name.split('[')[0].replace('_', '-')}-{uuid.uuid4().hex[:6]}"
