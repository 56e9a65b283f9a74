"""Pydantic models of what crosses a boundary: bundle metadata, requests, outcomes."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from core.errors import InvalidRequest

SHA1_REF = re.compile(r"sha1:[0-9a-f]{40}")
OperationKind = Literal["created", "updated", "deleted", "moved"]
OPERATION_KINDS: tuple[OperationKind, ...] = ("created", "updated", "deleted", "moved")
MAX_JSON_DEPTH = 32  # request bodies (upload-url, events) nest a few levels; deeper is refused


class _Wire(BaseModel):
    """Client-written JSON: unknown keys are tolerated, known ones strictly typed."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class OperationCounts(_Wire):
    created: StrictInt = Field(0, ge=0)
    updated: StrictInt = Field(0, ge=0)
    deleted: StrictInt = Field(0, ge=0)
    moved: StrictInt = Field(0, ge=0)


class Manifest(_Wire):
    """`manifest.json` as the existing clients write it (wire-format.md)."""

    version: StrictStr
    bundle_id: StrictStr = Field(min_length=1, max_length=128)
    workspace_path: StrictStr | None = None
    collection_name: StrictStr | None = None
    created_at: StrictStr | None = None
    sequence_number: StrictInt | None = Field(None, ge=1)
    parent_sequence: StrictInt | None = Field(None, ge=0)
    operations: OperationCounts | None = None
    total_files: StrictInt | None = Field(None, ge=0)
    total_size_bytes: StrictInt | None = Field(None, ge=0)
    compression: StrictStr | None = None
    encoding: StrictStr | None = None


def _sha1_ref(value: str | None) -> str | None:
    if value is not None and not SHA1_REF.fullmatch(value):
        raise ValueError("must be 'sha1:' and 40 lower-case hex digits")
    return value


class Operation(_Wire):
    """One entry of `metadata/operations.json`."""

    operation: OperationKind
    path: StrictStr | None = None
    relative_path: StrictStr | None = None
    source_path: StrictStr | None = None
    source_relative_path: StrictStr | None = None
    size_bytes: StrictInt | None = Field(None, ge=0)
    content_hash: StrictStr | None = None
    previous_hash: StrictStr | None = None
    language: StrictStr | None = None

    _check_content = field_validator("content_hash")(_sha1_ref)

    @property
    def target(self) -> str:
        """The workspace path the operation writes (destination for moves)."""
        return self.path if self.path is not None else (self.relative_path or "")

    @property
    def source(self) -> str:
        return self.source_path if self.source_path is not None else (self.source_relative_path or "")

    @property
    def sha1(self) -> str | None:
        return self.content_hash[5:] if self.content_hash else None


class OperationsFile(_Wire):
    operations: list[Operation] = Field(max_length=10_000_000)


class GitCommit(_Wire):
    """One commit of `metadata/git_history.json`, as the existing clients write it."""

    commit_id: StrictStr = Field(pattern=r"^[0-9a-f]{7,64}$")
    author_name: StrictStr | None = None
    authored_date: StrictStr | None = None
    message: StrictStr | None = None
    files: list[StrictStr] | None = None
    diff: StrictStr | None = None


class GitHistory(_Wire):
    """`metadata/git_history.json`: the commits a client read from its repository."""

    commits: list[GitCommit] = Field(default_factory=list, max_length=100_000)


class HistoryStats(BaseModel):
    """What one bundle's git history did: commits it carried, and those new here."""

    commits: int = 0
    stored: int = 0
    indexed: int = 0


class ProcessedOperations(BaseModel):
    """What applying a bundle did, per operation kind."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    moved: int = 0
    skipped: int = 0
    failed: int = 0


class OperationFailure(BaseModel):
    operation: OperationKind
    path: str
    reason: str


class UploadRequest(BaseModel):
    """The form fields of an upload, already parsed by the handler."""

    model_config = ConfigDict(frozen=True)

    workspace_path: str = Field(min_length=1, max_length=4096)
    collection_name: str | None = Field(None, max_length=255)
    sequence_number: int | None = Field(None, ge=1)
    force: bool = False
    source_path: str | None = Field(None, max_length=4096)
    logical_repo_id: str | None = Field(None, max_length=512)
    tenant: str = ""

    @field_validator("workspace_path", "source_path")
    @classmethod
    def _no_control(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL")
        return value


class UploadIntent(BaseModel):
    """What an upload-url call announced (workspaces/<ws>/intents/<id>.json): the
    upload's fields, the random token of its incoming key, and the time after which
    no event may act on it any more (the URL's expiry plus a grace for late events)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: UploadRequest
    token: str = Field(pattern=r"^[0-9a-f]{32}$")  # pydantic's (Rust) regex: `$` is the very end
    issued_at: float
    expires_at: float


def parse_json(body: bytes, what: str) -> Any:
    """A request body as JSON nesting at most MAX_JSON_DEPTH levels, else 400 INVALID_JSON
    (the parser's RecursionError included); the message names no content."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidRequest(f"{what} is not JSON (nesting at most {MAX_JSON_DEPTH} levels)",
                             code="INVALID_JSON") from None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidRequest(f"{what} nests deeper than {MAX_JSON_DEPTH} levels", code="INVALID_JSON")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return value


class UploadUrlBody(_Wire):
    """upload-url's JSON body: the upload's fields, text as JSON strings (null is
    absent); `sequence_number` may also be a JSON integer and `force` a boolean."""

    workspace_path: StrictStr | None = None
    collection_name: StrictStr | None = None
    sequence_number: StrictInt | StrictStr | None = None
    force: StrictBool | StrictStr | None = None
    source_path: StrictStr | None = None
    logical_repo_id: StrictStr | None = None
    session: StrictStr | None = None
    bundle_id: StrictStr | None = None

    def as_form(self) -> dict[str, str]:
        """The fields as a form would carry them."""
        return {name: str(value).lower() if isinstance(value, bool) else str(value)
                for name, value in self.model_dump(exclude_none=True).items()}


def invalid_fields(error: ValidationError) -> str:
    """The fields a validation error names, for a message that echoes no value."""
    return ", ".join(dict.fromkeys(str(e["loc"][0]) for e in error.errors() if e["loc"]))


class IndexingStats(BaseModel):
    """What indexing one bundle cost and did."""

    chunks_embedded: int = 0
    points_upserted: int = 0
    points_deleted: int = 0
    points_repointed: int = 0
    files_skipped: int = 0
    embed_ms: float = 0.0
    write_ms: float = 0.0
    index_ms: float = 0.0


class UploadResult(BaseModel):
    """The outcome of one bundle; stored, and repeated for a duplicate."""

    success: bool = True
    bundle_id: str
    workspace_path: str
    workspace_key: str
    collection_name: str
    sequence_number: int
    next_sequence: int
    processed_operations: ProcessedOperations
    failures: list[OperationFailure] = []
    indexing: IndexingStats | None = None
    git_history: HistoryStats | None = None  # only for a bundle that carried git history
    timings_ms: dict[str, float] = {}
    processing_time_ms: float
    committed_at: str
    duplicate: bool = False
