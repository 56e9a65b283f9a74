"""Fixtures shared by every test tier: S3 credentials for boto3, a moto S3 server, a Ceph RGW,
storage backends; temporary files in RAM."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from core.storage.base import ObjectStore
from core.storage.filesystem import FilesystemStore
from core.storage.s3 import S3Store
from tests.support.ceph_rgw import RgwEndpoint, RgwUnavailable, ensure_installed, rgw_cluster
from tests.support.moto_server import create_bucket, moto_server

FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}
RAM_TMP = Path("/dev/shm")
RAM_TMP_MIN_FREE = 4 << 30


def pytest_configure(config: pytest.Config) -> None:
    """Temporary files (tmp_path, the services' storage folders and spools, every subprocess's
    TMPDIR) go to a tmpfs where one has room, unless TMPDIR names a folder already.

    The filesystem backend fsyncs every write and its folder, as it must; on a VM's disk an
    fsync takes milliseconds, and that was most of the time of the file-heavy tests (the
    bundle fuzz: 47 s on disk, 13 s here). The code paths are the same: fsync, rename and
    unlink are only cheaper. Tests that need a full disk mount a small tmpfs of their own.
    """
    if os.environ.get("TMPDIR") or not RAM_TMP.is_dir() or not os.access(RAM_TMP, os.W_OK):
        return
    stat = os.statvfs(RAM_TMP)
    if stat.f_bavail * stat.f_frsize < RAM_TMP_MIN_FREE:
        return
    os.environ["TMPDIR"] = str(RAM_TMP)  # inherited by services, moto, schemathesis, xdist workers
    tempfile.tempdir = str(RAM_TMP)  # this process: tmp_path's base folder, tempfile.*


@pytest.fixture(scope="session", autouse=True)
def fake_aws_credentials() -> Iterator[None]:
    """boto3 (in tests and in service subprocesses) signs with throw-away keys."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_AWS.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session", autouse=True)
def one_botocore_loader() -> Iterator[None]:
    """Every boto3 session of the test process reads the service models through one loader.

    Each S3Store (the contract tests open hundreds, a race opens one per racer) starts a
    boto3 session of its own, whose loader parsed the S3 model's JSON again: ~0.4 s of
    CPU a store. The parsed model is the same, as is every request the clients make.
    Services in subprocesses keep botocore as it is.
    """
    loaders: dict[str | None, Any] = {}
    create_loader = botocore.session.create_loader

    def shared(search_path_string: str | None = None) -> Any:
        if search_path_string not in loaders:
            loaders[search_path_string] = create_loader(search_path_string)
        return loaders[search_path_string]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared)
        yield


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto S3 server for the whole test session."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def rgw_endpoint() -> Iterator[RgwEndpoint]:
    """One real Ceph RGW for the whole session (installs Ceph if missing, see local/ceph_rgw.sh).

    Its user has the session's AWS keys, so S3Store, which reads them from the
    environment, signs for it as it does for moto. Skipped only when Ceph cannot
    be installed here (no apt-get, not root, no package mirror).
    """
    try:
        ensure_installed()
    except RgwUnavailable as exc:
        pytest.skip(f"no Ceph RGW: {exc}")
    with rgw_cluster(FAKE_AWS["AWS_ACCESS_KEY_ID"], FAKE_AWS["AWS_SECRET_ACCESS_KEY"]) as endpoint:
        yield endpoint


@pytest.fixture
def s3_store(moto_endpoint: str, tmp_path: Path) -> S3Store:
    """An S3Store on a fresh moto bucket, prefix "svc"."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    create_bucket(moto_endpoint, bucket)
    return S3Store(bucket, "svc", endpoint_url=moto_endpoint, region="us-east-1",
                   addressing_style="path", max_connections=16, scratch_dir=tmp_path / "scratch")


@pytest.fixture
def fs_store(tmp_path: Path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "storage")


@pytest.fixture(params=["filesystem", "moto", "rgw"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    """Every storage backend in turn, for contract tests."""
    if request.param == "rgw":
        rgw: RgwEndpoint = request.getfixturevalue("rgw_endpoint")
        bucket = f"test-{uuid.uuid4().hex[:12]}"
        rgw.create_bucket(bucket)
        return S3Store(bucket, "svc", endpoint_url=rgw.url, region="us-east-1", addressing_style="path",
                       max_connections=16, scratch_dir=request.getfixturevalue("tmp_path") / "scratch")
    name = "fs_store" if request.param == "filesystem" else "s3_store"
    backend: ObjectStore = request.getfixturevalue(name)
    return backend
