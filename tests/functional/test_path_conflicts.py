"""A new file where the tree keeps a folder is a reported failure, never a silent drop
or a wedged workspace (regression of a fuzzer finding)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from core import workspace
from core.config import Settings
from core.models import UploadRequest
from core.pipeline import Pipeline
from core.storage.filesystem import FilesystemStore
from tests.support.bundles import BundleBuilder


# planning either lists a folder that holds many of a bundle's paths or looks each path
# up on its own: both ways must decide alike, so every test runs with both
@pytest.fixture(params=[1, 10**6], ids=["listed", "looked-up"], autouse=True)
def list_from(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace, "LIST_FROM", request.param)


def uploader(tmp_path: Path) -> Callable[[BundleBuilder], tuple[int, list[str]]]:
    pipeline = Pipeline(Settings(work_dir=str(tmp_path), qdrant_url=":memory:"),
                        FilesystemStore(tmp_path), indexer=None)

    def upload(builder: BundleBuilder) -> tuple[int, list[str]]:
        result = pipeline.upload(UploadRequest(workspace_path="/work/wedge"), io.BytesIO(builder.build()))
        return result.sequence_number, [f.path for f in result.failures]

    return upload


def test_a_folder_not_emptied_by_the_bundle_blocks_the_file_and_nothing_wedges(tmp_path: Path) -> None:
    upload = uploader(tmp_path)

    assert upload(BundleBuilder().created("lib/g.py", b"g").created("a.py", b"a")) == (1, [])
    assert upload(BundleBuilder().created("lib", b"file").deleted("lib/h.py")) == (2, ["lib"])
    moved = BundleBuilder().moved("a.py", "lib", None, content_hash_of=b"a").deleted("lib/h.py")
    assert upload(moved) == (3, ["lib"])
    assert upload(BundleBuilder().created("z.py", b"z")) == (4, [])
    emptied = BundleBuilder().deleted("lib/g.py").created("lib", b"now a file")
    assert upload(emptied) == (5, [])
    assert (tmp_path / "workspaces").rglob("lib").__next__().read_bytes() == b"now a file"


def test_files_and_folders_side_by_side_are_told_apart(tmp_path: Path) -> None:
    upload = uploader(tmp_path)
    first = BundleBuilder().created("src/a.py", b"a").created("src/b.py", b"b").created("src/pkg/c.py", b"c")
    assert upload(first.created("src/data", b"data")) == (1, [])
    second = (BundleBuilder().created("src/a.py", b"a").updated("src/b.py", b"B", previous=b"b")
              .created("src/pkg", b"over a folder").created("src/data/x.py", b"under a file")
              .created("src/new.py", b"new").created("src/other/d.py", b"d"))
    assert upload(second) == (2, ["src/pkg", "src/data/x.py"])
    tree = next((tmp_path / "workspaces").iterdir()) / "tree"
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()) == [
        "src/a.py", "src/b.py", "src/data", "src/new.py", "src/other/d.py", "src/pkg/c.py"]
    assert (tree / "src/b.py").read_bytes() == b"B"
