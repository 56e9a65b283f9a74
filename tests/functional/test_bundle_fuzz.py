"""Property-based: random valid bundles apply exactly; random broken ones change nothing.

Valid: random sequences of bundles over a small path alphabet in which paths
are files in one state and folders in another (created, updated, deleted,
moved with and without content, including what a stale client sends: updates of
missing files, deletes of absent ones, moves from missing sources, moves whose
hash disagrees). A model of the workspace predicts each bundle's outcome; after
every bundle the stored tree (files and folders), the counts, the failures, the
manifest and the sequence must be exactly the model's, and sending the same
bundle again must be a duplicate that changes nothing.

Invalid: a valid next bundle damaged at random (byte flips, truncation, unsafe
paths in operations and member names, wrong hashes and sizes, missing, stray
and duplicate members, links and devices, broken or mistyped JSON, counts that
disagree, conflicting operations, a reused bundle id, a wrong sequence number,
size limits). The pipeline must refuse it with a 4xx `DeltaError` and leave
storage byte for byte as it was, or - only for a flip in the gzip header that
changes no content - apply it exactly as the undamaged bundle.

Bugs found here are pinned as fixed examples at the end.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core import workspace
from core.config import Settings
from core.errors import DeltaError
from core.keys import workspace_key
from core.models import UploadRequest, UploadResult
from core.pipeline import Pipeline
from core.sequences import Sequences
from core.storage.filesystem import FilesystemStore
from core.views import manifest
from tests.support.bundles import BundleBuilder, RawMember

WORKSPACE = "/work/fuzz"
WS = workspace_key("", WORKSPACE, None)
# "lib" and "src/d" are files in some states and folders in others
PATHS = ["a.py", "b.md", "lib", "lib/g.py", "lib/h.py", "src/c.py", "src/d", "src/d/e.py"]
CONTENT = st.one_of(st.sampled_from([b"", b"same\n"]), st.binary(max_size=48))
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
Tree = dict[str, bytes]


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:depth]) for depth in range(1, len(parts))]


# the model -------------------------------------------------------------------
@dataclass(frozen=True)
class Op:
    kind: str
    path: str
    data: bytes | None = None  # content shipped in the bundle
    source: str = ""  # moves
    declared: bytes | None = None  # moves without content: the bytes whose hash is declared


@dataclass
class Outcome:
    tree: Tree
    counts: Counter[str] = field(default_factory=Counter)
    failures: set[tuple[str, str]] = field(default_factory=set)


@dataclass(frozen=True)
class Value:
    """What a path holds while the model replays a bundle: bytes, and where they came from."""

    data: bytes
    kind: str  # "held" (pre-bundle bytes, renamed or not), "created", "updated" or "moved"
    origin: str | None = None  # the pre-bundle path whose bytes these are or replace


def expected(tree: Tree, ops: list[Op]) -> Outcome:
    """What applying `ops` to `tree` must do: the operations in the order listed,
    each on the tree the previous ones left (wire-format.md). Then every new path
    fails while a folder of the tree keeps a file there, or else while a file stands
    where its folder must be (bytes renamed onto a failed path go back), until none
    fails. Counts are per path, by its net change."""
    now = {p: Value(b, "held", p) for p, b in tree.items()}
    out = Outcome({})
    targets: set[str] = set()
    last: dict[str, str] = {}
    for op in ops:
        if op.kind == "deleted":
            now.pop(op.path, None)
        elif op.kind in ("created", "updated"):
            assert op.data is not None
            now[op.path] = Value(op.data, op.kind)
        else:
            source = now.get(op.source)
            want = op.data if op.data is not None else op.declared
            if source is not None and (want is None or sha1(want) == sha1(source.data)):
                now[op.path] = now.pop(op.source)
            elif op.data is not None:
                now[op.path] = Value(op.data, "moved", source.origin if source else None)
                if source is not None and op.source != op.path:
                    del now[op.source]
            elif not (source is None and want is not None and op.path in now
                      and sha1(now[op.path].data) == sha1(want)):
                out.failures.add(("moved", op.path))
                out.counts["failed"] += 1
                continue
        targets.add(op.path)
        last[op.path] = op.kind
    while True:
        fresh = [p for p in now if p not in tree]
        stuck = [p for p in fresh if any(q.startswith(p + "/") and q in now for q in tree)]
        stuck = stuck or [p for p in fresh if any(a in now for a in ancestors(p))]
        if not stuck:
            break
        for path in stuck:
            value = now.pop(path)
            out.failures.add((last[path], path))
            out.counts["failed"] += 1
            targets.discard(path)
            if value.origin is not None and value.origin != path and value.origin not in now:
                now[value.origin] = Value(tree[value.origin], "held", value.origin)
    moved_from = {v.origin for p, v in now.items()
                  if v.kind in ("held", "moved") and v.origin != p and v.data != tree.get(p)}
    for path in sorted({p for op in ops for p in (op.path, op.source) if p}):
        value, before = now.get(path), tree.get(path)
        if (value.data if value else None) == before:
            out.counts["skipped"] += path in targets
        elif value is None:
            out.counts["deleted"] += path not in moved_from
        elif value.kind in ("held", "moved"):
            out.counts["moved"] += 1
        else:
            out.counts["updated" if before is not None else "created"] += 1
    out.tree = {p: v.data for p, v in now.items()}
    return out


@st.composite
def next_ops(draw: st.DrawFn, tree: Tree) -> list[Op]:
    """A valid bundle's operations: any sequence, paths named any number of times,
    as the existing clients send them (a rename as created + moved + deleted)."""
    ops: list[Op] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["created", "updated", "deleted", "moved", "moved", "rename"]))
        path = draw(st.sampled_from(PATHS))
        if kind in ("created", "updated"):
            ops.append(Op(kind, path, draw(CONTENT)))
        elif kind == "deleted":
            ops.append(Op(kind, path))
        elif kind == "rename":  # the client's shape: created dest, moved, deleted source
            source = draw(st.sampled_from(sorted(tree) or PATHS))
            data = tree.get(source, b"?")
            ops += [Op("created", path, data), Op("moved", path, data, source), Op("deleted", source)]
        else:
            source = draw(st.sampled_from(sorted(tree) * 2 + PATHS))
            if draw(st.booleans()):
                ops.append(Op(kind, path, draw(CONTENT), source))
            else:
                declared = draw(st.sampled_from(["source", "none", "other"]))
                claim = tree.get(source, b"?") if declared == "source" else (
                    None if declared == "none" else draw(CONTENT))
                ops.append(Op(kind, path, None, source, claim))
    return _one_content_per_member(ops)


def _one_content_per_member(ops: list[Op]) -> list[Op]:
    """A bundle ships one member per kind and path: every operation naming it, a move
    drawn without content included, carries those bytes (the first ones drawn)."""
    shipped: dict[tuple[str, str], bytes] = {}
    for op in ops:
        if op.data is not None:
            shipped.setdefault((op.kind, op.path), op.data)
    return [Op(op.kind, op.path, data, op.source, None) if (data := shipped.get((op.kind, op.path)))
            is not None else op for op in ops]


def _still_valid(ops: list[Op]) -> bool:
    """Any sequence of operations is valid (they apply in order)."""
    return True


def build(ops: list[Op], tree: Tree, bundle_id: str) -> BundleBuilder:
    builder = BundleBuilder(bundle_id=bundle_id, workspace_path=WORKSPACE)
    for op in ops:
        if op.kind == "created":
            builder.created(op.path, op.data or b"")
        elif op.kind == "updated":
            builder.updated(op.path, op.data or b"", previous=tree.get(op.path))
        elif op.kind == "deleted":
            builder.deleted(op.path, previous=tree.get(op.path))
        else:
            builder.moved(op.source, op.path, op.data, content_hash_of=op.declared)
    return builder


# the pipeline, in-process, on the filesystem backend ---------------------------
@contextmanager
def fresh_service() -> Iterator[tuple[Path, Pipeline]]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        root = Path(folder)
        config = Settings(work_dir=str(root), qdrant_url=":memory:", indexing_enabled=False,
                          lease_secs=5, claim_wait_secs=1, max_bundle_size_mb=1,
                          max_uncompressed_mb=1, max_bundle_members=64)
        yield root, Pipeline(config, FilesystemStore(root), indexer=None)


def upload(pipeline: Pipeline, body: bytes, sequence: int | None = None) -> UploadResult:
    request = UploadRequest(workspace_path=WORKSPACE, sequence_number=sequence)
    return pipeline.upload(request, io.BytesIO(body))


def snapshot(root: Path) -> dict[str, bytes]:
    """Every stored file, but locks and scratch."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not str(p.relative_to(root)).startswith((".locks", ".scratch"))}


def stored_tree(root: Path) -> tuple[Tree, set[str]]:
    base = root / "workspaces" / WS / "tree"
    entries = list(base.rglob("*")) if base.is_dir() else []
    files = {p.relative_to(base).as_posix(): p.read_bytes() for p in entries if p.is_file()}
    return files, {p.relative_to(base).as_posix() for p in entries if p.is_dir()}


def last_sequence(pipeline: Pipeline) -> int:
    head, _ = Sequences(pipeline.store, WS, 60).read()
    return head.last_sequence if head else 0


def check_applied(root: Path, pipeline: Pipeline, result: UploadResult, want: Outcome, number: int) -> None:
    files, folders = stored_tree(root)
    assert files == want.tree
    assert folders == {a for p in want.tree for a in ancestors(p)}, "no folder without a file"
    done = result.processed_operations.model_dump()
    assert {k: v for k, v in done.items() if v} == dict(+want.counts)
    assert {(f.operation, f.path) for f in result.failures} == want.failures
    assert result.sequence_number == number == last_sequence(pipeline)
    listed = manifest(pipeline.store, pipeline.settings, "", WORKSPACE, None, "", None)
    assert listed["files"] == {p: "sha1:" + sha1(b) for p, b in want.tree.items()}
    assert not any((root / ".scratch").iterdir()), "scratch is left clean"


@pytest.mark.parametrize("list_from", [1, 10**6], ids=["folders-listed", "paths-probed"])
@FUZZ
@given(data=st.data())
def test_random_valid_bundles_apply_exactly(list_from: int, data: st.DataObject) -> None:
    """Planning surveys the tree both ways: by listing each folder holding a new path
    (LIST_FROM=1) and by probing each path on its own (a limit never reached)."""
    with pytest.MonkeyPatch.context() as patch, fresh_service() as (root, pipeline):
        patch.setattr(workspace, "LIST_FROM", list_from)
        model: Tree = {}
        for number in range(1, data.draw(st.integers(1, 6), label="bundles") + 1):
            ops = data.draw(next_ops(model), label=f"bundle {number}")
            body = build(ops, model, f"fuzz-{number}").build()
            want = expected(model, ops)
            check_applied(root, pipeline, upload(pipeline, body), want, number)
            for kind in want.counts:
                event(f"bundle with {kind} operations")
            model = want.tree
            before = snapshot(root)
            again = upload(pipeline, body)
            assert again.duplicate and again.sequence_number == number
            assert snapshot(root) == before, "a duplicate changes nothing"


# damage ----------------------------------------------------------------------
UNSAFE = ["../x", "/abs", "a/../../b", "C:/x", "a\\b", "a\x00b", "", "./a", "a//b", "a/", ".",
          "a\nb", "\x7f", "x" * 300, "y/" * 2100 + "z"]
BYTE_DAMAGE = ["flip", "truncate"]
DAMAGE = ["unsafe-path", "unsafe-source", "unsafe-member", "wrong-hash", "wrong-size", "missing-member",
          "stray-member", "duplicate-member", "link", "device", "broken-json", "mistyped", "counts",
          "reused-id", "sequence", "bomb", "too-large", "too-many"]


def damage_bundle(data: st.DataObject, damage: str, builder: BundleBuilder, applied_id: str) -> bytes:
    """Apply `damage` to a valid bundle (one with at least one created file)."""
    ops, name = builder.operations, f"{builder.bundle_id}/"
    target = data.draw(st.sampled_from([op for op in ops if op["operation"] in ("created", "updated")]),
                       label="target")
    member = f"files/{target['operation']}/{target['path']}"
    if damage == "unsafe-path":
        op = data.draw(st.sampled_from(ops), label="op")
        op["path"] = op["relative_path"] = data.draw(st.sampled_from(UNSAFE), label="path")
    elif damage == "unsafe-source":
        builder.moved(data.draw(st.sampled_from(UNSAFE), label="source"), "moved-here.py")
    elif damage == "unsafe-member":
        builder.extra_members.append(RawMember(data.draw(st.sampled_from(
            ["../evil", "/etc/evil", name + "files/created/../../x", name + "files//created/x", "C:/x",
             name + "a\\b"]), label="member"), b"evil"))
    elif damage == "wrong-hash":
        target["content_hash"] = "sha1:" + sha1(b"something else")
    elif damage == "wrong-size":
        target["size_bytes"] += data.draw(st.sampled_from([1, -1])) if target["size_bytes"] else 1
    elif damage == "missing-member":
        builder.omit_members.add(member)
    elif damage == "stray-member":
        builder.extra_members.append(RawMember(name + "files/created/stray.py", b"stray"))
    elif damage == "duplicate-member":
        builder.extra_members.append(RawMember(name + data.draw(st.sampled_from(
            [member, "manifest.json", "metadata/operations.json"]), label="twice"), b"{}"))
    elif damage in ("link", "device"):
        kind = data.draw(st.sampled_from([tarfile.SYMTYPE, tarfile.LNKTYPE] if damage == "link"
                                         else [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE]))
        builder.omit_members.add(member)
        builder.extra_members.append(RawMember(name + member, kind=kind, linkname="/etc/passwd"))
    elif damage == "broken-json":  # a strict prefix of a JSON object is never JSON
        which = data.draw(st.sampled_from(["manifest", "operations"]), label="which")
        text = json.dumps(builder.manifest() if which == "manifest" else {"operations": ops}).encode()
        cut = text[: data.draw(st.integers(0, len(text) - 1), label="cut")] or b" "
        builder.raw_manifest, builder.raw_operations = (cut, None) if which == "manifest" else (None, cut)
    elif damage == "mistyped":
        key, value = data.draw(st.sampled_from([
            ("size_bytes", -1), ("size_bytes", "3"), ("operation", "renamed"), ("path", 7),
            ("content_hash", "md5:" + "0" * 32), ("content_hash", "sha1:" + "A" * 40)]), label="field")
        target[key] = value
    elif damage == "counts":
        counts = builder.manifest()["operations"]
        counts[target["operation"]] += 1
        builder.manifest_overrides["operations"] = counts
    elif damage == "conflict":
        ops.append(dict(target, operation="deleted") if data.draw(st.booleans()) else {**target})
    elif damage == "reused-id":
        builder.bundle_id = applied_id
    elif damage == "bomb":
        builder.created("bomb.bin", bytes(2 * 1024 * 1024))
    elif damage == "too-large":
        builder.created("noise.bin", hashlib.shake_256(b"noise").digest(1100 * 1024))
    elif damage == "too-many":
        for i in range(70):
            builder.created(f"many/{i}.py", b"")
    body = builder.build()
    if damage == "flip":  # often in the gzip header and trailer, where a flip may be harmless
        at = data.draw(st.one_of(st.integers(0, 9), st.integers(len(body) - 8, len(body) - 1),
                                 st.integers(0, len(body) - 1)), label="at")
        body = body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255), label="xor")]) + body[at + 1:]
    elif damage == "truncate":
        body = body[: data.draw(st.integers(0, len(body) - 1), label="length")]
    return body


def refused_or_applied_exactly(damage: str, data: st.DataObject) -> None:
    with fresh_service() as (root, pipeline):
        model: Tree = {}
        for number in range(1, data.draw(st.integers(1, 3), label="applied") + 1):
            ops = data.draw(next_ops(model), label=f"bundle {number}")
            upload(pipeline, build(ops, model, f"fuzz-{number}").build())
            model = expected(model, ops).tree
        ops = [*data.draw(next_ops(model), label="next"), Op("created", "new.py", data.draw(CONTENT))]
        if not _still_valid(ops):
            ops = [Op("created", "new.py", b"new\n")]
        builder = build(ops, model, "fuzz-next")
        sequence = number + data.draw(st.sampled_from([2, 5])) if damage == "sequence" else None
        body = damage_bundle(data, damage, builder, applied_id="fuzz-1")
        before = snapshot(root)
        try:
            result = upload(pipeline, body, sequence)
        except DeltaError as refused:
            event(f"{damage}: {refused.code}")
            assert 400 <= refused.http_status < 500, (damage, refused.code, refused.message)
            assert snapshot(root) == before, (damage, refused.code)
            assert not any((root / ".scratch").iterdir()), "scratch is left clean"
            return
        assert damage == "flip", f"{damage}: a damaged bundle was applied"
        event("flip: harmless, applied")
        check_applied(root, pipeline, result, expected(model, ops), number + 1)


@pytest.mark.parametrize("damage", BYTE_DAMAGE)
@settings(FUZZ, max_examples=50)
@given(data=st.data())
def test_random_bytes_damaged_change_nothing(damage: str, data: st.DataObject) -> None:
    refused_or_applied_exactly(damage, data)


@pytest.mark.parametrize("damage", DAMAGE)
@settings(FUZZ, max_examples=12)
@given(data=st.data())
def test_random_broken_bundles_change_nothing(damage: str, data: st.DataObject) -> None:
    refused_or_applied_exactly(damage, data)


# bugs the fuzzer found, as fixed examples ---------------------------------------
def apply_in_turn(bundles: list[list[Op]]) -> list[UploadResult]:
    """Apply each bundle in turn; each must end exactly as the model says."""
    results = []
    with fresh_service() as (root, pipeline):
        model: Tree = {}
        for number, ops in enumerate(bundles, start=1):
            want = expected(model, ops)
            results.append(upload(pipeline, build(ops, model, f"case-{number}").build()))
            check_applied(root, pipeline, results[-1], want, number)
            model = want.tree
    return results


def failed(result: UploadResult) -> list[tuple[str, str]]:
    return [(f.operation, f.path) for f in result.failures]


def test_a_new_file_where_a_folder_keeps_files_is_reported_as_failed() -> None:
    """A new file at a folder of the tree that the bundle's deletions only partly
    empty: the folder and its other files stay, the file is a reported failure."""
    _, second = apply_in_turn([[Op("created", "lib/g.py", b"g")],
                               [Op("created", "lib", b"file"), Op("deleted", "lib/h.py")]])
    assert failed(second) == [("created", "lib")]


def test_a_move_onto_a_folder_that_keeps_files_fails_and_the_workspace_goes_on() -> None:
    """The same as a move without content: a reported failure (the source stays),
    never a 500 that leaves the claim pending for every later upload to replay."""
    _, second, third = apply_in_turn([[Op("created", "lib/g.py", b"g"), Op("created", "a.py", b"a")],
                                      [Op("moved", "lib", None, "a.py", b"a"), Op("deleted", "lib/h.py")],
                                      [Op("created", "z.py", b"z")]])
    assert failed(second) == [("moved", "lib")]
    assert failed(third) == [] and third.processed_operations.created == 1


def test_deleting_the_last_file_of_a_folder_named_tree_leaves_no_folder() -> None:
    """Pruning after a delete climbs past a folder named 'tree' inside the workspace,
    so the path can become a file afterwards (as on S3)."""
    *_, last = apply_in_turn([[Op("created", "docs/tree/x.md", b"x")], [Op("deleted", "docs/tree/x.md")],
                              [Op("created", "docs/tree", b"now a file")]])
    assert failed(last) == [] and last.processed_operations.created == 1
