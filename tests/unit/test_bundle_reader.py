"""The bundle reader's edges: where the tar ends, and how far a bundle may expand."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from core.bundle import TRAILING_LIMIT, BundleLimits, open_bundle
from core.errors import BundleTooLarge, InvalidBundle
from tests.support.bundles import BundleBuilder

LIMITS = BundleLimits(max_uncompressed_bytes=2**20, max_members=100, max_metadata_bytes=2**20)


def tar_of(builder: BundleBuilder) -> bytes:
    return gzip.decompress(builder.build())


def read(tmp_path: Path, tar: bytes, limits: BundleLimits = LIMITS) -> list[str]:
    raw = tmp_path / "bundle.tar.gz"
    raw.write_bytes(gzip.compress(tar))
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    with open_bundle(raw, scratch, limits) as bundle:
        names = sorted(bundle.staged)
        assert all(f.path.read_bytes() for f in bundle.staged.values())
    assert list(scratch.iterdir()) == []  # the unpacked tar and the staged files are gone
    return names


def test_a_whole_bundle_stages_every_member_and_leaves_nothing(tmp_path: Path) -> None:
    builder = BundleBuilder().created("a.py", b"a = 1\n").created("deep/b.py", b"b = 2\n" * 50_000)
    assert "files/created/deep/b.py" in read(tmp_path, tar_of(builder))


def test_a_tar_cut_inside_a_member_is_refused(tmp_path: Path) -> None:
    tar = tar_of(BundleBuilder().created("big.py", b"x = 1\n" * 20_000))
    data = tar.index(b"x = 1\n")
    with pytest.raises(InvalidBundle):
        read(tmp_path, tar[: data + 50_000])


def test_only_padding_may_follow_the_archive(tmp_path: Path) -> None:
    tar = tar_of(BundleBuilder().created("a.py", b"a = 1\n"))
    read(tmp_path, tar + bytes(TRAILING_LIMIT // 2))
    with pytest.raises(InvalidBundle, match="after the end"):
        read(tmp_path, tar + b"\x01" * (TRAILING_LIMIT + 4096))


def test_a_bundle_expanding_past_the_limit_is_refused_while_unpacking(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("files/created/zeros.bin")
        info.size = 64 * 2**20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(BundleTooLarge) as refused:
        read(tmp_path, buffer.getvalue())
    assert refused.value.code == "BUNDLE_LIMIT_EXCEEDED"
