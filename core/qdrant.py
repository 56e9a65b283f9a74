"""The one place that opens Qdrant: a server by URL, or the embedded local mode.

`QDRANT_URL` is `http(s)://host:port` for a server (with `QDRANT_API_KEY`),
`:memory:` for an in-process store, or a folder path for embedded local mode.
The client library is imported on first use only, to keep cold starts short.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

from core.config import Settings
from core.errors import IndexUnavailable

log = logging.getLogger(__name__)


def is_remote(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def open_qdrant(settings: Settings) -> Any:
    from qdrant_client import QdrantClient

    url = settings.qdrant_url
    if is_remote(url):
        # bounded inside the lease, like storage requests (core.fence)
        return QdrantClient(url=url, api_key=settings.qdrant_api_key,
                            timeout=settings.qdrant_timeout)
    if url == ":memory:":
        return Serialized(QdrantClient(location=":memory:"))
    return Serialized(QdrantClient(path=url.removeprefix("file://")))


class Serialized:
    """The embedded (local-mode) client is not made for concurrent callers: this
    proxy lets the threads of one process share it, one call at a time."""

    _lock = threading.RLock()

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


class QdrantHandle:
    """Opens the client once per process, on first use; shared by its threads.

    The client is closed at interpreter exit (an atexit hook, which runs before
    modules are torn down). Left to the garbage collector, the embedded mode's
    `QdrantClient.__del__` runs during finalisation, where its `close()` imports
    portalocker to release the folder's lock and fails ("sys.meta_path is None"),
    printing a traceback on every stop of `make run`.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = open_qdrant(self.settings)
                except Exception as exc:
                    raise IndexUnavailable(f"cannot open Qdrant: {type(exc).__name__}") from exc
                atexit.register(self.close)
            return self._client

    def close(self) -> None:
        """Close the client (releasing an embedded folder's lock); the next use reopens it."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            atexit.unregister(self.close)
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001 - closing is best effort, at exit above all
                log.warning("closing Qdrant failed: %s", type(exc).__name__)

    def ping(self) -> None:
        try:
            self.client().get_collections()
        except IndexUnavailable:
            raise
        except Exception as exc:
            raise IndexUnavailable(f"Qdrant does not answer: {type(exc).__name__}") from exc
