"""The cached term counts are exactly those of the plain implementation they replaced, and
the stored and query vectors are BM25's weights of them."""

from __future__ import annotations

import re
import zlib
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from core.indexing import lexical
from tests.support.corpus import site_package_chunks

FILES = 300

# The implementation before the per-word cache, kept verbatim as the reference.
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
MAX_TOKEN = 64


def reference_tokens(text: str) -> list[str]:
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


def reference_sparse_vector(text: str) -> tuple[list[int], list[float]]:
    counts = Counter(zlib.crc32(t.encode("utf-8")) for t in reference_tokens(text))
    indices = sorted(counts)
    return indices, [float(counts[i]) for i in indices]


# identifier-ish text: camel humps, snake cases, digits (also non-ASCII ones, which \d matches)
IDENTIFIER_CHARS = "aAbBzZxXyY_09٣५ \n\t.:/-é日"
texts = st.one_of(
    st.text(alphabet=IDENTIFIER_CHARS, max_size=300),
    st.text(max_size=200),
    st.lists(st.tuples(st.sampled_from(["HTTPServer", "parse_http", "getXMLHttpRequest", "__init__", "x1y2",
                                        "ABCdef", "a" * 63, "b" * 64, "C" * 65, "_", "42", "v2Beta3"]),
                       st.sampled_from(["", " ", ".", "\r\n", "-", "é"])),
             max_size=40).map(lambda pieces: "".join(word + sep for word, sep in pieces)),
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(texts)
def test_generated_text_gives_the_same_vector(text: str) -> None:
    assert lexical.term_counts(text) == reference_sparse_vector(text)
    assert lexical.tokens(text) == reference_tokens(text)


def test_real_code_gives_the_same_vectors() -> None:
    lexical._word_ids.cache_clear()
    chunks = [f"{path}\n{text}" for path, text in site_package_chunks(FILES)]
    for text in chunks + chunks:  # the second round is served from the cache
        assert lexical.term_counts(text) == reference_sparse_vector(text)
    assert lexical._word_ids.cache_info().hits > lexical._word_ids.cache_info().misses


def test_a_full_cache_still_gives_the_same_vectors() -> None:
    """Evicted words are simply split again."""
    words = [f"name{i}Part_x{i}" for i in range(lexical.WORDS_CACHED + 500)]
    text = " ".join(words + words[:1000])
    assert lexical.term_counts(text) == reference_sparse_vector(text)
    assert lexical._word_ids.cache_info().currsize == lexical.WORDS_CACHED


def test_words_at_the_longest_token_length() -> None:
    for length in (MAX_TOKEN - 1, MAX_TOKEN, MAX_TOKEN + 1):
        for word in ("a" * length, "getX" + "y" * (length - 4), "snake_" + "z" * (length - 6)):
            text = f"{word} other {word}.{word}"
            assert lexical.term_counts(text) == reference_sparse_vector(text), length


def test_words_too_long_to_be_tokens_stay_out_of_the_cache() -> None:
    lexical._word_ids.cache_clear()
    text = "short " + "x" * (MAX_TOKEN + 1) + " " + "y" * 100_000
    expected = ([lexical.token_id("short")], [1.0])
    assert lexical.term_counts(text) == reference_sparse_vector(text) == expected
    assert lexical._word_ids.cache_info().currsize == 1


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(texts)
def test_stored_vectors_weigh_counts_as_bm25_and_queries_count_each_token_once(text: str) -> None:
    indices, counts = reference_sparse_vector(text)
    norm = lexical.K1 * (1 - lexical.B + lexical.B * sum(counts) / lexical.AVG_TOKENS)
    stored = lexical.sparse_vector(text)
    assert stored[0] == indices
    assert stored[1] == [tf * (lexical.K1 + 1) / (tf + norm) for tf in counts]
    assert lexical.query_vector(text) == (indices, [1.0] * len(indices))


def test_a_token_weighs_less_in_a_longer_text_and_saturates_with_its_count() -> None:
    short, long = lexical.sparse_vector("parse header"), lexical.sparse_vector("parse header " + "x1 " * 300)
    assert dict(zip(*short, strict=True))[lexical.token_id("parse")] > dict(zip(*long, strict=True))[
        lexical.token_id("parse")]
    once, many = lexical.sparse_vector("etag"), lexical.sparse_vector("etag " * 50)
    assert dict(zip(*many, strict=True))[lexical.token_id("etag")] < lexical.K1 + 1
    assert dict(zip(*once, strict=True))[lexical.token_id("etag")] < dict(zip(*many, strict=True))[
        lexical.token_id("etag")]
