"""Builds delta bundles exactly as the wire format describes, for tests.

Members are written in the order the real client writes them: file contents
first, then `manifest.json`, then `metadata/`. Every knob a hostile bundle
needs (raw members, links, overrides of any manifest or operation field) is
here, so tests state what is wrong rather than how to build a tarball.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import uuid
from dataclasses import dataclass, field
from typing import Any


def sha1_ref(data: bytes) -> str:
    return "sha1:" + hashlib.sha1(data).hexdigest()


@dataclass
class RawMember:
    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    linkname: str = ""


@dataclass
class BundleBuilder:
    bundle_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    leading_folder: bool = True
    workspace_path: str = "/work/myrepo"
    collection_name: str = "myrepo-test"
    sequence_number: int | None = None
    operations: list[dict[str, Any]] = field(default_factory=list)
    contents: dict[str, bytes] = field(default_factory=dict)
    manifest_overrides: dict[str, Any] = field(default_factory=dict)
    extra_members: list[RawMember] = field(default_factory=list)
    raw_manifest: bytes | None = None
    raw_operations: bytes | None = None
    omit_members: set[str] = field(default_factory=set)

    def created(self, path: str, data: bytes) -> BundleBuilder:
        return self._with_content("created", path, data)

    def updated(self, path: str, data: bytes, previous: bytes | None = None) -> BundleBuilder:
        self._with_content("updated", path, data)
        self.operations[-1]["previous_hash"] = sha1_ref(previous) if previous is not None else None
        return self

    def moved(self, source: str, dest: str, data: bytes | None = None, *,
              content_hash_of: bytes | None = None) -> BundleBuilder:
        op: dict[str, Any] = {"operation": "moved", "path": dest, "relative_path": dest,
                              "absolute_path": f"/home/dev/myrepo/{dest}",
                              "source_path": source, "source_relative_path": source,
                              "source_absolute_path": f"/home/dev/myrepo/{source}",
                              "file_hash": None, "modified_time": "2026-01-26T02:00:00",
                              "language": "python"}
        hashed = data if data is not None else content_hash_of
        if hashed is not None:
            op["size_bytes"] = len(hashed)
            op["content_hash"] = sha1_ref(hashed)
        if data is not None:
            self.contents[f"files/moved/{dest}"] = data
        self.operations.append(op)
        return self

    def deleted(self, path: str, previous: bytes | None = None) -> BundleBuilder:
        self.operations.append({
            "operation": "deleted", "path": path, "relative_path": path,
            "absolute_path": f"/home/dev/myrepo/{path}",
            "previous_hash": sha1_ref(previous) if previous is not None else None,
            "file_hash": None, "modified_time": "2026-01-26T02:00:00", "language": "unknown",
        })
        return self

    def _with_content(self, kind: str, path: str, data: bytes) -> BundleBuilder:
        self.operations.append({
            "operation": kind, "path": path, "relative_path": path,
            "absolute_path": f"/home/dev/myrepo/{path}", "size_bytes": len(data),
            "content_hash": sha1_ref(data), "file_hash": None,
            "modified_time": "2026-01-26T02:00:00", "language": "python",
        })
        self.contents[f"files/{kind}/{path}"] = data
        return self

    def manifest(self) -> dict[str, Any]:
        counts = {k: 0 for k in ("created", "updated", "deleted", "moved")}
        for op in self.operations:
            if op.get("operation") in counts:
                counts[op["operation"]] += 1
        manifest = {
            "version": "1.0", "bundle_id": self.bundle_id, "workspace_path": self.workspace_path,
            "collection_name": self.collection_name, "created_at": "2026-01-26T02:00:00.123456",
            "sequence_number": self.sequence_number, "parent_sequence": None,
            "operations": counts, "total_files": len(self.operations),
            "total_size_bytes": sum(len(d) for d in self.contents.values()),
            "compression": "gzip", "encoding": "utf-8",
        }
        manifest.update(self.manifest_overrides)
        return manifest

    def build(self) -> bytes:
        root = f"{self.bundle_id}/" if self.leading_folder else ""
        buffer = io.BytesIO()
        # a fixed gzip mtime: the same bundle is the same bytes on every build
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed, \
                tarfile.open(fileobj=packed, mode="w") as tar:
            for folder in ("files", "files/created", "files/updated", "files/moved"):
                _add(tar, RawMember(root + folder, kind=tarfile.DIRTYPE))
            for name, data in self.contents.items():
                if name not in self.omit_members:
                    _add(tar, RawMember(root + name, data))
            manifest = self.raw_manifest or json.dumps(self.manifest(), indent=2).encode()
            if "manifest.json" not in self.omit_members:
                _add(tar, RawMember(root + "manifest.json", manifest))
            operations = self.raw_operations or json.dumps({"operations": self.operations}).encode()
            if "metadata/operations.json" not in self.omit_members:
                _add(tar, RawMember(root + "metadata/operations.json", operations))
            hashes = {"workspace_path": self.workspace_path, "updated_at": "2026-01-26T02:00:00",
                      "file_hashes": {op["path"]: op.get("content_hash") for op in self.operations
                                      if isinstance(op, dict) and "path" in op}}
            _add(tar, RawMember(root + "metadata/hashes.json", json.dumps(hashes).encode()))
            for member in self.extra_members:
                _add(tar, member)
        return buffer.getvalue()


def _add(tar: tarfile.TarFile, member: RawMember) -> None:
    info = tarfile.TarInfo(member.name)
    info.type = member.kind
    info.mode = 0o755 if member.kind == tarfile.DIRTYPE else 0o644
    info.linkname = member.linkname
    info.mtime = 1_700_000_000
    if member.kind == tarfile.REGTYPE:
        info.size = len(member.data)
        tar.addfile(info, io.BytesIO(member.data))
    else:
        tar.addfile(info)
