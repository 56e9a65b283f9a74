"""`RemoteUploadClient`: scan, diff, bundle, upload, and only then remember.

The order that makes it lose nothing:

    1. re-send bundles left pending by an interrupted run (same bundle ids)
    2. compare the server's status with the local record; if they disagree or
       the record is gone, rebuild it from the server's manifest
    3. scan (stat cache first, hashing only what changed) and diff
    4. write each bundle (split to fit the server's limit) to pending/, send it,
       and record its changes as confirmed only after the server's 200
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from core.client.bundles import split, write_bundle
from core.client.changes import Change, diff
from core.client.identity import repo_identity
from core.client.scan import FileState, scan, still_present
from core.client.state import StateStore, SyncState, default_cache_dir
from core.client.transport import Refused, Transport, TransportError

MIB = 1024 * 1024
BUDGET_SHARE = 0.8  # of the server's advertised max bundle size


@dataclass
class SyncResult:
    success: bool
    bundles_sent: int = 0
    operations: dict[str, int] = field(default_factory=dict)
    skipped_binary: int = 0
    skipped_large: int = 0
    last_sequence: int = 0
    resynced: bool = False
    error: str | None = None


class RemoteUploadClient:
    def __init__(
        self,
        upload_endpoint: str,
        workspace_path: str | Path,
        collection_name: str | None = None,
        *,
        remote_path: str | None = None,
        logical_repo_id: str | None = None,
        cache_dir: str | Path | None = None,
        max_file_mb: int = 50,
        retries: int = 5,
        force: bool = False,
        progress: bool = False,
        direct_upload_mb: float = 24.0,
        token: str | None = None,
    ) -> None:
        self.root = Path(workspace_path).resolve()
        self.collection = collection_name
        self.remote_path = remote_path or f"/work/{self.root.name}"
        self.logical_repo_id = logical_repo_id or repo_identity(self.root)
        self.max_file_bytes = max_file_mb * MIB
        self.force = force
        self.progress = progress
        self.direct_upload_bytes = int(direct_upload_mb * MIB)
        self.transport = Transport(upload_endpoint, retries=retries, token=token)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.store = StateStore(cache, upload_endpoint, self.root)

    def __enter__(self) -> RemoteUploadClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.transport.close()

    # public -----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self.transport.get_json("/api/v1/delta/status", self._workspace_params())

    def sync(self) -> SyncResult:
        """Upload whatever differs between the workspace and the server."""
        return self._sync(scope=None)

    def process_and_upload_changes(self, changed_paths: list[str | Path]) -> bool:
        """Upload the changes of just these paths (absolute or workspace-relative)."""
        scope = {self._relative(p) for p in changed_paths}
        return self._sync(scope=scope).success

    def build_bundles(self, dest_dir: Path) -> list[Path]:
        """The bundles a sync would send now, written to `dest_dir`; nothing is sent."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root} is not a folder")
        state = self.store.load() or SyncState()
        changes, _ = self._changes(state, None)
        return [write_bundle(self.root, group, dest_dir, self.remote_path, self.collection).path
                for group in split(changes, self._budget(None))]

    # the sync ---------------------------------------------------------------
    def _sync(self, scope: set[str] | None) -> SyncResult:
        result = SyncResult(success=False)
        if not self.root.is_dir():  # an absent folder must never read as "every file deleted"
            result.error = f"{self.root} is not a folder"
            return result
        try:
            state = self.store.load()
            lost = state is None
            state = self._deliver_pending(state or SyncState(), result)
            status = self.status()
            if lost or state.last_sequence != status.get("last_sequence"):
                state = self._resync()
                result.resynced = True
            changes, scanned = self._changes(state, scope)
            result.skipped_binary, result.skipped_large = scanned
            for number, group in enumerate(split(changes, self._budget(status)), start=1):
                with tempfile.TemporaryDirectory() as work:
                    built = write_bundle(self.root, group, Path(work), self.remote_path,
                                         self.collection)
                    parked = self.store.park(number, built.path, built.changes)
                self._send(parked, built.changes, state, result)
            result.last_sequence = state.last_sequence
            result.success = True
        except (TransportError, Refused) as exc:
            result.error = str(exc)
        return result

    def _deliver_pending(self, state: SyncState, result: SyncResult) -> SyncState:
        for bundle, changes in self.store.pending():
            self._send(bundle, changes, state, result)
        return state

    def _send(self, bundle: Path, changes: list[Change], state: SyncState,
              result: SyncResult) -> None:
        bundle_id = bundle.name.split("-", 1)[1].removesuffix(".tar.gz")
        answer = None
        if bundle.stat().st_size > self.direct_upload_bytes:
            answer = self.transport.upload_direct(bundle, bundle_id, self._fields(),
                                                  self._workspace_params(), self.progress)
        if answer is None:
            answer = self.transport.upload(bundle, self._fields(), self.progress)
        if not answer.get("success"):
            raise TransportError(f"unexpected answer: {str(answer)[:200]}")
        failed = {f.get("path") for f in answer.get("failures", [])}
        for change in changes:
            if change.path in failed:
                state.confirmed.pop(change.path, None)
                continue
            if change.operation == "moved" and change.source:
                state.confirmed.pop(change.source, None)
            if change.operation == "deleted":
                state.confirmed.pop(change.path, None)
            else:
                state.confirmed[change.path] = FileState(change.size, change.mtime_ns,
                                                         change.sha1 or "")
            result.operations[change.operation] = result.operations.get(change.operation, 0) + 1
        state.last_sequence = int(answer.get("sequence_number", state.last_sequence))
        self.store.save(state)
        self.store.unpark(bundle)
        result.bundles_sent += 1

    def _resync(self) -> SyncState:
        """Rebuild the record from the server's manifest: what it holds is confirmed
        wherever the local file has the same content."""
        server: dict[str, str] = {}
        cursor = ""
        while True:
            page = self.transport.get_json("/api/v1/delta/manifest",
                                           {**self._workspace_params(), "cursor": cursor})
            server.update({p: h.removeprefix("sha1:") for p, h in page["files"].items()})
            cursor = page.get("next_cursor") or ""
            if not cursor:
                break
        local = scan(self.root, {}, self.max_file_bytes, only=set(server)).files
        state = SyncState(last_sequence=int(page.get("last_sequence", 0)))
        for path, sha1 in server.items():
            known = local.get(path)
            # a file whose content differs keeps an mtime of 0, so the next scan re-hashes it
            state.confirmed[path] = known if known and known.sha1 == sha1 else FileState(0, 0, sha1)
        self.store.save(state)
        return state

    def _changes(self, state: SyncState, scope: set[str] | None) -> tuple[list[Change], tuple[int, int]]:
        scanned = scan(self.root, state.confirmed, self.max_file_bytes, only=scope)
        confirmed = {p: s.sha1 for p, s in state.confirmed.items()}
        # a file the server holds that is still here but now filtered out (binary, too
        # large, ignored, in a heavy folder) is left alone on the server, never deleted
        unseen = [p for p in confirmed if p not in scanned.files and (scope is None or p in scope)]
        kept = still_present(self.root, unseen)
        changes = diff(confirmed, scanned.files, scope, kept=kept)
        return changes, (scanned.skipped_binary, scanned.skipped_large)

    # helpers ----------------------------------------------------------------
    def _budget(self, status: dict[str, Any] | None) -> int:
        limit_mb = int((status or {}).get("server_info", {}).get("max_bundle_size_mb", 100))
        return int(limit_mb * MIB * BUDGET_SHARE)

    def _fields(self) -> dict[str, str]:
        fields = {"workspace_path": self.remote_path, "force": str(self.force),
                  "logical_repo_id": self.logical_repo_id, "source_path": str(self.root)}
        if self.collection:
            fields["collection_name"] = self.collection
        return fields

    def _workspace_params(self) -> dict[str, str]:
        return {"workspace_path": self.remote_path, "logical_repo_id": self.logical_repo_id}

    def _relative(self, path: str | Path) -> str:
        candidate = Path(path)
        if candidate.is_absolute():
            candidate = candidate.resolve().relative_to(self.root)
        return candidate.as_posix()
