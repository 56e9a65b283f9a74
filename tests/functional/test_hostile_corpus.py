"""Every checked-in hostile bundle (tests/hostile/) is refused in bounded memory and time.

In-process, against the pipeline itself: a 4xx `DeltaError` with the code listed
in index.json, storage byte-for-byte as it was, Python-allocated memory under
64 MB and well under 10 s each (generous bounds: a bomb that expanded would
blow through both).
"""

from __future__ import annotations

import io
import json
import time
import tracemalloc
from pathlib import Path

import pytest

from core.config import Settings
from core.errors import DeltaError
from core.models import UploadRequest
from core.pipeline import Pipeline
from core.storage.filesystem import FilesystemStore

CORPUS = Path(__file__).resolve().parents[1] / "hostile"
INDEX = json.loads((CORPUS / "index.json").read_text())
TINY = {"max_bundle_size_mb": 1, "max_uncompressed_mb": 2, "max_metadata_mb": 1,
        "max_bundle_members": 100}


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not str(p.relative_to(root)).startswith(".locks")}


def test_the_corpus_is_complete() -> None:
    files = {p.name.removesuffix(".tar.gz") for p in CORPUS.glob("*.tar.gz")}
    assert files == set(INDEX) and len(files) > 100


@pytest.mark.parametrize("name", sorted(INDEX))
def test_hostile_bundle_is_refused_and_changes_nothing(name: str, tmp_path: Path) -> None:
    expected = INDEX[name]
    limits = TINY if expected["tiny_limits"] else {}
    settings = Settings(work_dir=str(tmp_path), qdrant_url=":memory:", **limits)
    store = FilesystemStore(tmp_path)
    pipeline = Pipeline(settings, store, indexer=None)
    before = snapshot(tmp_path)
    data = (CORPUS / f"{name}.tar.gz").read_bytes()
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(DeltaError) as refused:
            pipeline.upload(UploadRequest(workspace_path="/work/hostile"), io.BytesIO(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 10
    assert peak < 64 * 1024 * 1024, f"{peak / 2**20:.1f} MB allocated"
    assert refused.value.code == expected["code"]
    assert 400 <= refused.value.http_status < 500
    assert snapshot(tmp_path) == before
