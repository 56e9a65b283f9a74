"""Liveness and readiness answers, for anyone: they reveal no configuration.

wire-format.md has clients expect `status`, `timestamp`, `version`, `qdrant_url`
and `work_dir`; the last two are kept as words, never the configured values
(which may carry credentials, e.g. `http://user:password@qdrant:6333`):

    qdrant_url   "server" or "embedded" (as `qdrant_mode`)
    work_dir     "filesystem" or "s3" (as `storage_backend`)

A failing readiness check names the failing part and the error's code, never its message.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core import __version__
from core.config import Settings
from core.errors import DeltaError
from core.qdrant import QdrantHandle, is_remote
from core.storage import ObjectStore


def health(
    settings: Settings, store: ObjectStore, qdrant: QdrantHandle, ready: bool
) -> tuple[int, dict[str, Any]]:
    """Liveness always; with `ready`, also whether storage and Qdrant answer (503 if not)."""
    mode = "server" if is_remote(settings.qdrant_url) else "embedded"
    body: dict[str, Any] = {
        "status": "healthy",
        "timestamp": datetime.now(UTC).isoformat(),
        "version": __version__,
        "qdrant_url": mode,
        "qdrant_mode": mode,
        "work_dir": store.kind,
        "storage_backend": store.kind,
    }
    if not ready:
        return 200, body
    checks = {"storage": _check(store.ping),
              "qdrant": _check(qdrant.ping) if settings.indexing_enabled else "ok"}
    body["checks"] = checks
    ok = all(c == "ok" for c in checks.values())
    body["status"] = "ready" if ok else "unavailable"
    return (200 if ok else 503), body


def _check(probe: Any) -> str:
    try:
        probe()
    except DeltaError as exc:
        return f"error: {exc.code}"
    except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
        return f"error: {type(exc).__name__}"
    return "ok"
