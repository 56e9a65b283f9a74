"""The client's local record of what the server holds, and of bundles in flight.

Kept outside the workspace (one JSON file per endpoint and workspace under the
cache folder) and replaced atomically. A bundle is written to `pending/` before
it is sent and removed only after the server confirmed it, so an interrupted
push re-sends the same bundle (same id) first, and the confirmed state only
ever describes what the server really has.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.client.changes import Change
from core.client.scan import FileState

FORMAT = 1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "delta-upload"


@dataclass
class SyncState:
    confirmed: dict[str, FileState] = field(default_factory=dict)
    last_sequence: int = 0


class StateStore:
    def __init__(self, cache_dir: Path, endpoint: str, workspace: Path) -> None:
        key = hashlib.sha256(f"{endpoint}\n{workspace}".encode()).hexdigest()[:16]
        self.file = cache_dir / f"{workspace.name}-{key}.json"
        self.pending_dir = cache_dir / f"{workspace.name}-{key}.pending"

    def load(self) -> SyncState | None:
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return None
        if data.get("format") != FORMAT:
            return None
        files = {p: FileState(**v) for p, v in data.get("confirmed", {}).items()}
        return SyncState(confirmed=files, last_sequence=int(data.get("last_sequence", 0)))

    def save(self, state: SyncState) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        body = {"format": FORMAT, "last_sequence": state.last_sequence,
                "confirmed": {p: asdict(s) for p, s in sorted(state.confirmed.items())}}
        temp = self.file.with_suffix(".tmp")
        temp.write_text(json.dumps(body))
        os.replace(temp, self.file)

    def pending(self) -> list[tuple[Path, list[Change]]]:
        """Bundles written but not confirmed, oldest first."""
        if not self.pending_dir.is_dir():
            return []
        found = []
        for meta in sorted(self.pending_dir.glob("*.json")):
            bundle = meta.with_suffix(".tar.gz")
            if bundle.is_file():
                changes = [Change(**c) for c in json.loads(meta.read_text())]
                found.append((bundle, changes))
        return found

    def park(self, number: int, bundle: Path, changes: list[Change]) -> Path:
        """Move a freshly built bundle into `pending/` with its change list."""
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        name = f"{number:06d}-{bundle.name}"
        target = self.pending_dir / name
        os.replace(bundle, target)
        meta = target.with_name(name.removesuffix(".tar.gz") + ".json")
        meta.write_text(json.dumps([asdict(c) for c in changes]))
        return target

    def unpark(self, bundle: Path) -> None:
        bundle.with_name(bundle.name.removesuffix(".tar.gz") + ".json").unlink(missing_ok=True)
        bundle.unlink(missing_ok=True)
