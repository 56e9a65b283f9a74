"""A new file where the tree keeps a folder is a reported failure, never a silent drop
or a wedged workspace (regression of a fuzzer finding)."""

from __future__ import annotations

import io
from pathlib import Path

from core.config import Settings
from core.models import UploadRequest
from core.pipeline import Pipeline
from core.storage.filesystem import FilesystemStore
from tests.support.bundles import BundleBuilder


def test_a_folder_not_emptied_by_the_bundle_blocks_the_file_and_nothing_wedges(tmp_path: Path) -> None:
    pipeline = Pipeline(Settings(work_dir=str(tmp_path), qdrant_url=":memory:"),
                        FilesystemStore(tmp_path), indexer=None)

    def upload(builder: BundleBuilder) -> tuple[int, list[str]]:
        result = pipeline.upload(UploadRequest(workspace_path="/work/wedge"), io.BytesIO(builder.build()))
        return result.sequence_number, [f.path for f in result.failures]

    assert upload(BundleBuilder().created("lib/g.py", b"g").created("a.py", b"a")) == (1, [])
    assert upload(BundleBuilder().created("lib", b"file").deleted("lib/h.py")) == (2, ["lib"])
    moved = BundleBuilder().moved("a.py", "lib", None, content_hash_of=b"a").deleted("lib/h.py")
    assert upload(moved) == (3, ["lib"])
    assert upload(BundleBuilder().created("z.py", b"z")) == (4, [])
    emptied = BundleBuilder().deleted("lib/g.py").created("lib", b"now a file")
    assert upload(emptied) == (5, [])
    assert (tmp_path / "workspaces").rglob("lib").__next__().read_bytes() == b"now a file"
