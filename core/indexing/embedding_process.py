"""Dense vectors of large batches made in a helper process, so that the index step uses
both cores.

Why: the embedder's per-text work, the lexical vectors and the rest of the
index step (chunking, building and writing points) all need the GIL. On a
thread of the same process they took turns: a 5,000-file first upload kept 1.3
of 2 cores busy and the embedding thread took twice as long as alone
(docs/indexing.md). A helper process with its own copy of the embedder embeds
one batch while this process chunks the next (lexical vectors included) and
writes the last; the vectors come back as float32 bytes.

The helper is started on first use (spawned: the worker is threaded), one per
process, only where the process may run on two CPUs or more and only for a
batch of at least `MIN_TEXTS` texts, so a small delta never pays for a start.
It ignores SIGINT (a Ctrl-C reaches the whole process group; the helper ends
with its parent). If it dies, the batch is embedded in this process and the
next large batch starts a new helper.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from core.indexing.embedders import Embedder, open_embedder

log = logging.getLogger(__name__)

MIN_TEXTS = 256
_embedder: Any = None  # the helper's own embedder


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class EmbeddingProcess:
    def __init__(self, model: str, cache_dir: str | None, dim: int) -> None:
        self.model, self.cache_dir, self.dim = model, cache_dir, dim
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[list[float]] | None:
        """The vectors of `texts`, or None when the helper could not make them (it died:
        the caller embeds them itself, and the next large batch starts a new helper)."""
        import numpy as np

        pool = self._started()
        try:
            data = pool.submit(_embed, texts).result()
        except BrokenProcessPool:
            log.warning("the embedding helper process ended; embedding in the worker instead")
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            return None
        rows = np.frombuffer(data, dtype=np.float32).reshape(len(texts), self.dim)
        vectors: list[list[float]] = rows.tolist()
        return vectors

    def warm(self) -> None:
        """Start the helper now, without waiting: it loads its embedder while the
        first batch is chunked."""
        try:
            self._started().submit(_embed, [])
        except BrokenProcessPool:
            with self._lock:
                self._pool = None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_start, initargs=(self.model, self.cache_dir))
            return self._pool


Embed = Callable[[list[str]], list[list[float]]]


def bulk_embedder(embedder: Embedder, helper: EmbeddingProcess | None) -> Embed:
    """`embedder.embed`, sending batches of MIN_TEXTS texts or more to `helper`."""

    def embed(texts: list[str]) -> list[list[float]]:
        if helper is not None and len(texts) >= MIN_TEXTS:
            vectors = helper.embed(texts)
            if vectors is not None:
                return vectors
        return embedder.embed(texts)

    return embed


def _start(model: str, cache_dir: str | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _embedder
    _embedder = open_embedder(model, cache_dir)
    logging.getLogger().setLevel(logging.WARNING)  # wordllama's import set the root logger to INFO


def _embed(texts: list[str]) -> bytes:
    import numpy as np

    if not texts:
        return b""
    array = getattr(_embedder, "embed_array", None)
    vectors = array(texts) if array is not None else np.asarray(_embedder.embed(texts), dtype=np.float32)
    return bytes(vectors.astype(np.float32, copy=False).tobytes())
