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

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
MAX_TOKEN = 64


def tokens(text: str) -> list[str]:
    found: list[str] = []
    for word in _WORD.findall(text):
        if len(word) > MAX_TOKEN:
            continue
        lowered = word.lower()
        parts = [p.lower() for piece in word.split("_") for p in _CAMEL.findall(piece)]
        if len(lowered) > 1:
            found.append(lowered)
        if len(parts) > 1:
            found.extend(p for p in parts if len(p) > 1)
    return found


def token_id(token: str) -> int:
    return zlib.crc32(token.encode("utf-8"))


def sparse_vector(text: str) -> tuple[list[int], list[float]]:
    """(indices, values): term frequencies of the tokens of `text`."""
    counts = Counter(token_id(t) for t in tokens(text))
    indices = sorted(counts)
    return indices, [float(counts[i]) for i in indices]
