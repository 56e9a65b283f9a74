"""The one place that opens the vector engine: once per process, shared by its threads.

Which engine `QDRANT_URL` names is `core.indexing.engines`' business; this
handle opens it on first use (cold starts stay short), maps a failure to open
it to `IndexUnavailable`, and closes it at interpreter exit (an atexit hook,
which runs before modules are torn down: an embedded engine releases its
folder's lock there, not during finalisation, where imports fail).
"""

from __future__ import annotations

import atexit
import logging
import threading

from core.config import Settings
from core.errors import IndexUnavailable
from core.indexing.engines import IndexEngine, is_remote, open_engine

log = logging.getLogger(__name__)

__all__ = ["QdrantHandle", "is_remote"]


class QdrantHandle:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: IndexEngine | None = None
        self._lock = threading.Lock()

    def engine(self) -> IndexEngine:
        with self._lock:
            if self._engine is None:
                try:
                    self._engine = open_engine(self.settings)
                except IndexUnavailable:
                    raise
                except Exception as exc:
                    raise IndexUnavailable(f"cannot open Qdrant: {type(exc).__name__}: {exc}") from exc
                atexit.register(self.close)
            return self._engine

    def use(self, engine: IndexEngine) -> None:
        """Serve `engine` instead of opening one (tests that share one engine)."""
        with self._lock:
            self._engine = engine

    def close(self) -> None:
        """Close the engine (releasing an embedded folder's lock); the next use reopens it."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            atexit.unregister(self.close)
            try:
                engine.close()
            except Exception as exc:  # noqa: BLE001 - closing is best effort, at exit above all
                log.warning("closing Qdrant failed: %s", type(exc).__name__)

    def ping(self) -> None:
        try:
            self.engine().ping()
        except IndexUnavailable:
            raise
        except Exception as exc:
            raise IndexUnavailable(f"Qdrant does not answer: {type(exc).__name__}") from exc
