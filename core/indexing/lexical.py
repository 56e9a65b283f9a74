"""Code-aware lexical vectors: tokens to a sparse vector of term frequencies.

`parseHttpRequest`, `parse_http_request` and `src/http/request.py` all yield
the tokens `parse`, `http`, `request`; whole identifiers are kept as tokens too,
so an exact name still ranks first. Token ids are a stable 32-bit hash, so no
vocabulary is stored; Qdrant's IDF modifier turns frequencies into BM25-like
weights at query time.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from functools import lru_cache
from itertools import chain

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
MAX_TOKEN = 64
WORDS_CACHED = 1 << 14  # words of at most MAX_TOKEN characters: 15 MB at worst, 96% hits on code


def tokens(text: str) -> list[str]:
    return [token for word in _WORD.findall(text) for token in _word_tokens(word)]


def _word_tokens(word: str) -> list[str]:
    """The tokens one word contributes: itself, lowered, and its camel/snake parts."""
    if len(word) > MAX_TOKEN:
        return []
    lowered = word.lower()
    parts = [p.lower() for piece in word.split("_") for p in _CAMEL.findall(piece)]
    found = [lowered] if len(lowered) > 1 else []
    if len(parts) > 1:
        found.extend(p for p in parts if len(p) > 1)
    return found


@lru_cache(maxsize=WORDS_CACHED)
def _word_ids(word: str) -> tuple[int, ...]:
    """Code repeats the same few words endlessly: each is split and hashed once."""
    return tuple(token_id(t) for t in _word_tokens(word))


def token_id(token: str) -> int:
    return zlib.crc32(token.encode("utf-8"))


def sparse_vector(text: str) -> tuple[list[int], list[float]]:
    """(indices, values): term frequencies of the tokens of `text`, counted without a
    Python step per word occurrence (a cache lookup per word, the rest in C)."""
    words = _WORD.findall(text)
    if words and max(map(len, words)) > MAX_TOKEN:
        words = [w for w in words if len(w) <= MAX_TOKEN]  # they yield nothing; kept out of the cache
    counts = Counter(chain.from_iterable(map(_word_ids, words)))
    indices = sorted(counts)
    return indices, list(map(float, map(counts.__getitem__, indices)))
