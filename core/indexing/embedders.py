"""Dense embedders behind one small interface, chosen by `EMBEDDING_MODEL`.

    wordllama            embedded default; its weights ship inside the package and
                         are loaded from the package's own folder, never downloaded
    none                 no dense vector: lexical search only
    <fastembed model>    e.g. BAAI/bge-small-en-v1.5, from files already present in
                         EMBEDDING_CACHE_DIR (never downloaded at run time)

A model that cannot be loaded raises `EmbedderError` naming the setting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # numpy is imported where it is used: not at start-up (60 ms)
    import numpy as np
    from numpy.typing import NDArray

WORDLLAMA = "wordllama"
NONE = "none"
TEXTS_PER_BATCH = 512  # per tokenizer call: enough to keep its threads busy
ROWS_PER_SUM = 16384  # embedding rows gathered at once (16 MiB), however long the text


class EmbedderError(Exception):
    """The configured embedding model cannot be used."""


class Embedder(Protocol):
    name: str
    dim: int  # 0: no dense vector

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class NoEmbedder:
    name = NONE
    dim = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[] for _ in texts]


class WordLlamaEmbedder:
    """Static token embeddings (256 dimensions): fast on a CPU, no network.

    The vector of a text is the L2-normalised mean of the embedding rows of its
    tokens, exactly as wordllama computes it, but without wordllama's padded
    (batch x longest text x 256) arrays: on source code, filling those, not the
    maths, was nearly all of the time. Each text's rows are summed on their own,
    in the same order and precision, so the vectors come out the same bit for bit
    (tests/functional/test_embedder_equality.py compares them).
    """

    name = WORDLLAMA

    def __init__(self) -> None:
        try:
            import wordllama
            from tokenizers import Tokenizer
            from wordllama import WordLlama

            folder = Path(wordllama.__file__).parent
            self._model: Any = WordLlama.load(cache_dir=folder, disable_download=True)
            # our own copy: the model's tokenizer pads, and is left as it is
            self._tokenizer = Tokenizer.from_str(self._model.tokenizer.to_str())
        except Exception as exc:
            raise EmbedderError(
                f"EMBEDDING_MODEL=wordllama: cannot load the packaged model ({exc})"
            ) from exc
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._prepare = _sentencepiece_spaces(self._tokenizer)
        self._rows: NDArray[np.float32] = self._model.embedding
        self.dim = int(self._rows.shape[1])

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Thread-safe without a lock: the tokenizer is only read once built (its
        Rust encoder runs without the GIL and in parallel), and every array is
        the call's own. A text without tokens (only "") gets a zero vector where
        wordllama would give NaNs."""
        vectors: list[list[float]] = self.embed_array(texts).tolist()
        return vectors

    def embed_array(self, texts: list[str]) -> NDArray[np.float32]:
        """`embed` as one float32 array (a text a row)."""
        import numpy as np

        means = np.zeros((len(texts), self.dim), dtype=np.float32)
        last_id = self._rows.shape[0] - 1
        for start in range(0, len(texts), TEXTS_PER_BATCH):
            batch = texts[start : start + TEXTS_PER_BATCH]
            encodings = self.encode(batch)
            for row, encoding in enumerate(encodings, start):
                ids = np.asarray(encoding.ids, dtype=np.int64)
                if ids.size:
                    np.clip(ids, 0, last_id, out=ids)  # as wordllama does for ids past its rows
                    means[row] = self._sum_of_rows(ids) / np.float32(ids.size)
        norms = np.linalg.norm(means, axis=1, keepdims=True)
        np.divide(means, norms, out=means, where=norms > 0)
        return means

    def encode(self, texts: list[str]) -> list[Any]:
        """The tokenizer's encodings of `texts` (no padding, no special tokens)."""
        return list(self._tokenizer.encode_batch_fast(self._prepare(texts), add_special_tokens=False))

    def _sum_of_rows(self, ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """The embedding rows of `ids` added in order, as numpy adds them in one sum
        (row after row, in float32), but gathered a slice at a time: a one-line
        minified file of a million tokens would otherwise need a 1 GiB array."""
        import numpy as np

        total: NDArray[np.float32] = self._rows[ids[:ROWS_PER_SUM]].sum(axis=0, dtype=np.float32)
        for start in range(ROWS_PER_SUM, ids.size, ROWS_PER_SUM):
            rows = self._rows[ids[start : start + ROWS_PER_SUM]]
            total = np.vstack([total[np.newaxis, :], rows]).sum(axis=0, dtype=np.float32)
        return total


SPACE = "\u2581"  # SentencePiece's word marker


def _sentencepiece_spaces(tokenizer: Any) -> Callable[[list[str]], list[str]]:
    """Where the tokenizer's whole normalizer is SentencePiece's "mark word starts" (prepend
    ▁ to a non-empty text, spaces become ▁), do that in Python's C string code and
    take the normalizer out: the tokenizer's own keeps character alignments nobody
    reads here, a fifth of its time on code. Any other normalizer is left in place."""
    import json

    config = json.loads(tokenizer.to_str()).get("normalizer") or {}
    if config != {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]}:
        return lambda texts: texts
    tokenizer.normalizer = None
    return lambda texts: [SPACE + t.replace(" ", SPACE) if t else t for t in texts]


class FastEmbedEmbedder:
    """A fastembed ONNX model from a local cache folder."""

    def __init__(self, model: str, cache_dir: str | None) -> None:
        try:
            from fastembed import TextEmbedding

            self._model: Any = TextEmbedding(
                model_name=model, cache_dir=cache_dir, local_files_only=True
            )
            probe = next(iter(self._model.embed(["probe"])))
        except Exception as exc:
            raise EmbedderError(
                f"EMBEDDING_MODEL={model}: cannot load it from EMBEDDING_CACHE_DIR="
                f"{cache_dir or '(fastembed default)'} ({type(exc).__name__}: {exc})"
            ) from exc
        self.name = model
        self.dim = len(probe)
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            return [list(map(float, v)) for v in self._model.embed(texts)]


def open_embedder(model: str, cache_dir: str | None) -> Embedder:
    if model == NONE:
        return NoEmbedder()
    if model == WORDLLAMA:
        return WordLlamaEmbedder()
    return FastEmbedEmbedder(model, cache_dir)
