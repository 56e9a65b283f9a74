"""Reading a delta bundle: unpack, one pass over the tar, then validation.

The gzip stream is first unpacked whole to a private scratch folder (zlib's
speed, capped near the uncompressed size limit, CRC checked at its end); then
one pass over the plain tar copies every regular member by its offset to its
own scratch file while its SHA-1 is computed. Nothing is ever held in memory
whole, and no member's bytes pass through tarfile's per-read machinery, which
costs more than the copying for a bundle of many small files. The layout
(leading `<bundle_id>/` folder or not) is decided after the pass from the exact
member names: a workspace file called `manifest.json` or
`metadata/operations.json` at any depth lives under `files/…` and cannot be
mistaken for the bundle's own. Nothing outside the scratch folder is touched
here; a bundle that fails any check raises `InvalidBundle` or `BundleTooLarge`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.errors import BundleTooLarge, DeltaError, InvalidBundle, concerning, disk_full_is_retryable
from core.keys import BUNDLE_ID
from core.models import OPERATION_KINDS, GitHistory, Manifest, Operation, OperationsFile
from core.paths import check_path, path_problem

COPY_CHUNK = 1024 * 1024
TRAILING_LIMIT = 1024 * 1024  # tar pads to 10 KiB records; anything much longer is not padding
MANIFEST = "manifest.json"
OPERATIONS = "metadata/operations.json"
GIT_HISTORY = "metadata/git_history.json"
CONTENT_KINDS = ("created", "updated", "moved")
LAYOUT_FOLDERS = ("files/", "metadata/")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class BundleLimits:
    max_uncompressed_bytes: int
    max_members: int
    max_metadata_bytes: int


@dataclass(frozen=True)
class StagedFile:
    """A member's bytes, copied to scratch, with their SHA-1."""

    path: Path
    sha1: str
    size: int


@dataclass
class Bundle:
    """A validated bundle: metadata plus staged content, by bundle-relative name."""

    manifest: Manifest
    operations: list[Operation]
    staged: dict[str, StagedFile] = field(default_factory=dict)
    history: GitHistory | None = None  # metadata/git_history.json, when the client sent one

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id

    def content(self, op: Operation) -> StagedFile | None:
        """The content shipped for `op` (`files/<kind>/<path>`), if any."""
        return self.staged.get(f"files/{op.operation}/{op.target}")


@contextmanager
def open_bundle(raw: Path, scratch_root: Path, limits: BundleLimits) -> Iterator[Bundle]:
    """Read and validate `raw`; the staged files are removed on exit (also when the
    scratch folder filled up part-way: `StorageFull`)."""
    with disk_full_is_retryable("scratch folder"):
        scratch = Path(tempfile.mkdtemp(prefix="bundle-", dir=scratch_root))
    try:
        with disk_full_is_retryable("scratch folder"):
            members = _stage_members(raw, scratch, limits)
        yield _validate(members, limits)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _stage_members(raw: Path, scratch: Path, limits: BundleLimits) -> dict[str, StagedFile]:
    members: dict[str, StagedFile] = {}
    seen: set[str] = set()
    total = 0
    unpacked = scratch / "bundle.tar"
    try:
        _unpack(raw, unpacked, _tar_size_limit(limits))
        with unpacked.open("rb") as handle, tarfile.open(fileobj=handle, mode="r:") as archive:
            for count, member in enumerate(archive, start=1):
                if count > limits.max_members:
                    raise BundleTooLarge(
                        f"bundle has more than {limits.max_members} members",
                        code="BUNDLE_LIMIT_EXCEEDED",
                    )
                name = _member_name(member)
                if member.isdir():
                    continue
                if not member.isfile() or member.sparse is not None:
                    raise InvalidBundle(
                        f"member {name!r} is a link or special file; only regular files "
                        "and folders are accepted",
                        code="UNSAFE_MEMBER",
                    )
                if name in seen:
                    raise InvalidBundle(f"member {name!r} appears twice", code="DUPLICATE_MEMBER")
                seen.add(name)
                total += member.size
                if total > limits.max_uncompressed_bytes:
                    raise BundleTooLarge(
                        "bundle expands beyond the uncompressed size limit",
                        code="BUNDLE_LIMIT_EXCEEDED",
                    )
                members[name] = _copy_member(handle.fileno(), member, scratch / str(count))
            end = archive.offset
        if unpacked.stat().st_size - end > TRAILING_LIMIT:
            raise InvalidBundle("bundle has data after the end of its tar archive")
    except DeltaError:
        raise
    except OSError as exc:
        if not _is_archive_error(exc):
            raise
        raise InvalidBundle("bundle is not a readable tar.gz archive") from None
    except Exception:  # tarfile and zlib raise assorted errors on malformed input
        raise InvalidBundle("bundle is not a readable tar.gz archive") from None
    finally:
        unpacked.unlink(missing_ok=True)
    return members


def _tar_size_limit(limits: BundleLimits) -> int:
    """The most a tar within the limits can take: its content, a header and padding
    per member (long names and pax records included), the end padding."""
    return limits.max_uncompressed_bytes + (limits.max_members + 1) * 4 * tarfile.BLOCKSIZE + TRAILING_LIMIT


def _unpack(raw: Path, dest: Path, limit: int) -> None:
    """gunzip `raw` to `dest`, refusing it as soon as it passes `limit` bytes; reading to
    the end makes gzip check the CRC and length trailer."""
    written = 0
    with gzip.open(raw, "rb") as source, dest.open("wb") as out:
        while chunk := source.read(COPY_CHUNK):
            written += len(chunk)
            if written > limit:
                raise BundleTooLarge("bundle expands beyond the uncompressed size limit",
                                     code="BUNDLE_LIMIT_EXCEEDED")
            out.write(chunk)


def _is_archive_error(exc: OSError) -> bool:
    # gzip raises BadGzipFile (an OSError) for corrupt input; real I/O errors have errno.
    return exc.errno is None


def _member_name(member: tarfile.TarInfo) -> str:
    name = member.name
    if name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/") if member.isdir() else name
    problem = path_problem(name)
    if problem is not None:
        raise InvalidBundle(f"member name {name[:120]!r} {problem}", code="UNSAFE_PATH")
    return name


def _copy_member(archive: int, member: tarfile.TarInfo, dest: Path) -> StagedFile:
    """Copy one member's bytes from the unpacked archive (an open descriptor) by offset."""
    digest = hashlib.sha1()
    offset, left = member.offset_data, member.size
    with dest.open("xb") as out:
        while left > 0:
            chunk = os.pread(archive, min(left, COPY_CHUNK), offset)
            if not chunk:
                raise InvalidBundle("bundle is not a readable tar.gz archive: it ends inside a member")
            digest.update(chunk)
            out.write(chunk)
            offset += len(chunk)
            left -= len(chunk)
    return StagedFile(path=dest, sha1=digest.hexdigest(), size=member.size)


def _validate(members: dict[str, StagedFile], limits: BundleLimits) -> Bundle:
    prefix = _layout_prefix(members)
    staged = {name[len(prefix) :]: f for name, f in members.items()}
    manifest = _parse(staged, MANIFEST, Manifest, limits)
    if not BUNDLE_ID.fullmatch(manifest.bundle_id):
        raise InvalidBundle("manifest bundle_id must be 1-128 letters, digits, '.', '_' or '-'")
    operations: list[Operation] = []
    with concerning(manifest.bundle_id):
        if OPERATIONS in staged:
            operations = _parse(staged, OPERATIONS, OperationsFile, limits).operations
        history = _parse(staged, GIT_HISTORY, GitHistory, limits) if GIT_HISTORY in staged else None
        bundle = Bundle(manifest=manifest, operations=operations, staged=staged, history=history)
        _check_operations(bundle)
    return bundle


def _layout_prefix(members: dict[str, StagedFile]) -> str:
    """'' when the bundle's files are at the root, else the one leading folder;
    every member must then lie in the layout (manifest.json, files/, metadata/)."""
    if MANIFEST in members:
        prefix = ""
    else:
        tops = {name[: -len(MANIFEST) - 1] for name in members
                if name.endswith("/" + MANIFEST) and name.count("/") == 1}
        if len(tops) != 1:
            raise InvalidBundle("bundle has no manifest.json", code="MISSING_MEMBER")
        prefix = tops.pop() + "/"
    for name in members:
        relative = name[len(prefix):] if name.startswith(prefix) else None
        if relative is None or not (relative == MANIFEST or relative.startswith(LAYOUT_FOLDERS)):
            raise InvalidBundle(f"member {name[:120]!r} is outside the bundle layout",
                                code="UNEXPECTED_MEMBER")
    return prefix


def _parse(
    staged: dict[str, StagedFile], name: str, model: type[M], limits: BundleLimits
) -> M:
    member = staged[name]
    if member.size > limits.max_metadata_bytes:
        raise BundleTooLarge(f"{name} exceeds the metadata size limit", code="BUNDLE_LIMIT_EXCEEDED")
    try:
        data: Any = json.loads(member.path.read_bytes())
    except ValueError:  # undecodable bytes, bad JSON, or an integer past Python's digit limit
        raise InvalidBundle(f"{name} is not valid UTF-8 JSON") from None
    except RecursionError:
        raise InvalidBundle(f"{name} is nested too deeply") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidBundle(f"{name} is invalid: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """Field locations and reasons, never the offending values."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "document"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _check_operations(bundle: Bundle) -> None:
    """Every operation must be applicable on its own: safe paths, the content a write
    needs. A path named by several operations is fine: they apply in order
    (`core.net_effect`), and a collision in the final tree fails only that path."""
    counts = dict.fromkeys(OPERATION_KINDS, 0)
    referenced: set[str] = set()
    for index, op in enumerate(bundle.operations):
        where = f"operations[{index}]"
        if op.path is not None and op.relative_path is not None and op.path != op.relative_path:
            raise InvalidBundle(f"{where}: path and relative_path differ")
        target = check_path(op.target, f"{where}.path")
        counts[op.operation] += 1
        if op.operation == "moved":
            check_path(op.source, f"{where}.source_path")
        if op.operation in CONTENT_KINDS:
            _check_content(bundle, op, where)
            referenced.add(f"files/{op.operation}/{target}")
    stray = sorted(n for n in bundle.staged if n.startswith("files/") and n not in referenced)
    if stray:
        raise InvalidBundle(f"member {stray[0]!r} belongs to no operation", code="UNEXPECTED_MEMBER")
    declared = bundle.manifest.operations
    if declared is not None and declared.model_dump() != counts:
        raise InvalidBundle("manifest operation counts do not match metadata/operations.json")


def _check_content(bundle: Bundle, op: Operation, where: str) -> None:
    staged = bundle.content(op)
    if staged is None:
        if op.operation == "moved":
            return
        raise InvalidBundle(
            f"{where}: files/{op.operation}/{op.target} is missing", code="MISSING_MEMBER"
        )
    if op.size_bytes is not None and op.size_bytes != staged.size:
        raise InvalidBundle(f"{where}: size_bytes does not match the content", code="SIZE_MISMATCH")
    if op.sha1 is not None and op.sha1 != staged.sha1:
        raise InvalidBundle(f"{where}: content_hash does not match the content", code="HASH_MISMATCH")
