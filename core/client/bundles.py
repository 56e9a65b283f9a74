"""Writing delta bundles in the wire format, split to fit the server's size limit.

Layout as the existing clients write it: every member under a `<bundle_id>/`
folder, file contents first, then `manifest.json` and `metadata/`. Moved files
carry their content, so a move never depends on the server still holding the
source; the server re-uses the stored vectors for it all the same.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from core.client.changes import Change

MAX_OPERATIONS = 5000
OVERHEAD_BYTES = 4096  # per file: tar header, padding, its operations.json entry


@dataclass(frozen=True)
class BuiltBundle:
    bundle_id: str
    path: Path
    changes: list[Change]


def split(changes: list[Change], budget_bytes: int) -> Iterator[list[Change]]:
    """Consecutive groups whose content fits in `budget_bytes` (uncompressed, so
    the compressed bundle does too), at most MAX_OPERATIONS each."""
    group: list[Change] = []
    used = 0
    for change in changes:
        cost = change.size + OVERHEAD_BYTES
        if group and (used + cost > budget_bytes or len(group) >= MAX_OPERATIONS):
            yield group
            group, used = [], 0
        group.append(change)
        used += cost
    if group:
        yield group


def write_bundle(root: Path, changes: list[Change], dest_dir: Path, remote_path: str,
                 collection: str | None) -> BuiltBundle:
    bundle_id = str(uuid.uuid4())
    path = dest_dir / f"{bundle_id}.tar.gz"
    now = datetime.now(UTC).replace(tzinfo=None).isoformat()
    counts = {kind: 0 for kind in ("created", "updated", "deleted", "moved")}
    operations = []
    sent: list[Change] = []
    with tarfile.open(path, "w:gz", compresslevel=6) as tar:
        for folder in ("", "/files", "/files/created", "/files/updated", "/files/moved", "/metadata"):
            _add_dir(tar, bundle_id + folder)
        for change in changes:
            if change.operation != "deleted":
                try:
                    mtime_ns = (root / change.path).stat().st_mtime_ns
                    data = (root / change.path).read_bytes()
                except OSError:
                    continue  # gone since the scan: the next sync sees it as deleted
                # the file may have changed since it was hashed: send what is there now
                change = replace(change, sha1=hashlib.sha1(data).hexdigest(), size=len(data),
                                 mtime_ns=mtime_ns)
                _add_bytes(tar, f"{bundle_id}/files/{change.operation}/{change.path}", data)
            counts[change.operation] += 1
            operations.append(_operation(root, change, now))
            sent.append(change)
        changes = sent
        manifest = {
            "version": "1.0", "bundle_id": bundle_id, "workspace_path": remote_path,
            "collection_name": collection, "created_at": now, "sequence_number": None,
            "parent_sequence": None, "operations": counts, "total_files": len(changes),
            "total_size_bytes": sum(c.size for c in changes), "compression": "gzip",
            "encoding": "utf-8",
        }
        _add_json(tar, f"{bundle_id}/manifest.json", manifest)
        _add_json(tar, f"{bundle_id}/metadata/operations.json", {"operations": operations})
        hashes = {c.path: f"sha1:{c.sha1}" for c in changes if c.sha1}
        _add_json(tar, f"{bundle_id}/metadata/hashes.json",
                  {"workspace_path": remote_path, "updated_at": now, "file_hashes": hashes})
    return BuiltBundle(bundle_id=bundle_id, path=path, changes=changes)


def _operation(root: Path, change: Change, now: str) -> dict[str, object]:
    entry: dict[str, object] = {
        "operation": change.operation, "path": change.path, "relative_path": change.path,
        "absolute_path": str(root / change.path), "file_hash": None, "modified_time": now,
        "language": "unknown",
    }
    if change.operation != "deleted":
        entry["size_bytes"] = change.size
        entry["content_hash"] = f"sha1:{change.sha1}"
    if change.previous is not None:
        entry["previous_hash"] = f"sha1:{change.previous}"
    if change.source is not None:
        entry.update(source_path=change.source, source_relative_path=change.source,
                     source_absolute_path=str(root / change.source))
    return entry


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(time.time())
    tar.addfile(info)


def _add_json(tar: tarfile.TarFile, name: str, value: object) -> None:
    _add_bytes(tar, name, json.dumps(value, indent=2).encode("utf-8"))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))
