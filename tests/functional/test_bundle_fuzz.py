"""Property-based: random valid bundles apply exactly; random broken ones change nothing.

Valid: a random sequence of bundles over a small path alphabet (created,
updated, deleted, moved with and without content), checked after every bundle
against a model of the workspace. Invalid: a valid bundle damaged at random
(byte flips, truncation, an unsafe path, a wrong hash, a missing member); the
pipeline must refuse it with a 4xx `DeltaError` and leave storage byte-for-byte
as it was, or, when the damage happens to be harmless, apply it.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import Settings
from core.errors import DeltaError
from core.keys import workspace_key
from core.models import UploadRequest
from core.pipeline import Pipeline
from core.storage.filesystem import FilesystemStore
from tests.support.bundles import BundleBuilder

PATHS = ["a.py", "b.py", "src/c.py", "src/d/e.py", "f.md", "lib/g.py"]
WORKSPACE = "/work/fuzz"
WS = workspace_key("", WORKSPACE, None)
CONTENT = st.binary(min_size=0, max_size=64)
FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fresh() -> tuple[Path, Pipeline]:
    root = Path(tempfile.mkdtemp(prefix="fuzz-"))
    config = Settings(work_dir=str(root), qdrant_url=":memory:", lease_secs=5, claim_wait_secs=1)
    return root, Pipeline(config, FilesystemStore(root), indexer=None)


def tree(root: Path) -> dict[str, bytes]:
    base = root / "workspaces" / WS / "tree"
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}


def storage(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not str(p.relative_to(root)).startswith(".locks")}


def upload(pipeline: Pipeline, body: bytes) -> int:
    return pipeline.upload(UploadRequest(workspace_path=WORKSPACE), io.BytesIO(body)).sequence_number


@st.composite
def edit_bundle(draw: st.DrawFn, model: dict[str, bytes],
                number: int) -> tuple[BundleBuilder, dict[str, bytes]]:
    """Bundle `number`: edits on distinct paths, consistent with `model`, and the model after it."""
    after = dict(model)
    builder = BundleBuilder(bundle_id=f"fuzz-{number}")
    touched: set[str] = set()
    for _ in range(draw(st.integers(1, 4))):
        free = [p for p in PATHS if p not in touched]
        if not free:
            break
        path = draw(st.sampled_from(free))
        kind = draw(st.sampled_from(["write", "delete", "move"]))
        if kind == "move" and path in after:
            targets = [p for p in PATHS if p not in after and p not in touched and p != path
                       and not any(p.startswith(q + "/") or q.startswith(p + "/") for q in after)]
            if targets:
                dest = draw(st.sampled_from(targets))
                data = after.pop(path)
                with_content = draw(st.booleans())
                builder.moved(path, dest, data if with_content else None, content_hash_of=data)
                after[dest] = data
                touched |= {path, dest}
                continue
        if kind == "delete" and path in after:
            builder.deleted(path)
            del after[path]
        elif not any(path.startswith(q + "/") or q.startswith(path + "/") for q in after if q != path):
            data = draw(CONTENT)
            if path in after:
                builder.updated(path, data, previous=after[path])
            else:
                builder.created(path, data)
            after[path] = data
        touched.add(path)
    return builder, after


@FUZZ
@given(st.data())
def test_random_valid_bundles_apply_exactly(data: st.DataObject) -> None:
    root, pipeline = fresh()
    model: dict[str, bytes] = {}
    for number in range(1, data.draw(st.integers(1, 5)) + 1):
        builder, model = data.draw(edit_bundle(model, number))
        assert upload(pipeline, builder.build()) == number
        assert tree(root) == model


DAMAGE = st.sampled_from(["flip", "truncate", "unsafe-path", "wrong-hash", "missing-member", "bad-json"])


@FUZZ
@given(st.data(), DAMAGE)
def test_random_broken_bundles_change_nothing(data: st.DataObject, damage: str) -> None:
    root, pipeline = fresh()
    upload(pipeline, BundleBuilder().created("keep.py", b"kept\n").build())
    builder, _ = data.draw(edit_bundle({"keep.py": b"kept\n"}, 2))
    if damage == "unsafe-path":
        builder.operations[-1]["path"] = builder.operations[-1]["relative_path"] = data.draw(
            st.sampled_from(["../x", "/abs", "a/../../b", "C:/x", "a\\b", "a\x00b", "", "./a"]))
    elif damage == "wrong-hash":
        builder.created("extra.py", b"x").operations[-1]["content_hash"] = "sha1:" + "0" * 40
    elif damage == "missing-member":
        builder.created("extra.py", b"x").omit_members.add("files/created/extra.py")
    elif damage == "bad-json":
        builder.raw_operations = data.draw(st.binary(max_size=40))
    body = builder.build()
    if damage == "flip":
        position = data.draw(st.integers(0, len(body) - 1))
        flipped = body[position] ^ data.draw(st.integers(1, 255))
        body = body[:position] + bytes([flipped]) + body[position + 1:]
    elif damage == "truncate":
        body = body[: data.draw(st.integers(0, len(body) - 1))]
    before = storage(root)
    try:
        upload(pipeline, body)
    except DeltaError as refused:
        assert 400 <= refused.http_status < 500, refused
        assert storage(root) == before
    else:
        assert damage in ("flip", "bad-json"), "only harmless damage may apply"
