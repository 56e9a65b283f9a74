"""WordLlamaEmbedder gives the vectors wordllama itself gives, on real code and odd texts."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wordllama
from wordllama import WordLlama

from core.indexing.embedders import ROWS_PER_SUM, WordLlamaEmbedder
from tests.support.corpus import site_package_chunks

FILES = 300
MAX_COMPONENT_DIFF = 1e-4
MIN_COSINE = 0.99999

EDGE_TEXTS = {
    "whitespace": " \t \n  \n",
    "crlf": "def f():\r\n    return 1\r\n",
    "bare crlf": "\r\n",
    "non-ascii": "# Größe, 日本語, emoji 🚀, Ελληνικά\nnaïve = 'café'\n",
    "200 KB": "".join(f"value_{i} = compute(value_{i - 1}, {i} * 3)\n" for i in range(6500)),
}


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


@pytest.fixture(scope="module")
def reference() -> Any:
    """wordllama's own inference object, loaded apart from the embedder's."""
    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


@pytest.fixture(scope="module")
def code() -> list[str]:
    return [text for _, text in site_package_chunks(FILES)]


def wordllama_vectors(reference: Any, texts: list[str]) -> np.ndarray:
    """wordllama's vectors for `texts`, embedded shortest first (far less padding: the
    same vectors, in a fraction of the time)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = np.empty((len(texts), reference.embedding.shape[1]), dtype=np.float32)
    vectors[order] = reference.embed([texts[i] for i in order], norm=True, batch_size=128)
    return vectors


def our_vectors(embedder: WordLlamaEmbedder, texts: list[str]) -> np.ndarray:
    return np.array(embedder.embed(texts), dtype=np.float32)


def assert_same_vectors(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    assert np.isfinite(theirs).all()
    assert np.abs(ours - theirs).max() < MAX_COMPONENT_DIFF
    assert (ours * theirs).sum(axis=1).min() >= MIN_COSINE


def test_vectors_of_real_code_are_wordllamas(embedder: WordLlamaEmbedder, reference: Any,
                                             code: list[str]) -> None:
    assert len(code) > 2000
    assert_same_vectors(our_vectors(embedder, code), wordllama_vectors(reference, code))


def test_token_ids_are_wordllamas_without_the_padding(embedder: WordLlamaEmbedder, reference: Any,
                                                      code: list[str]) -> None:
    texts = code[:1000]
    padded = reference.tokenize(texts)
    theirs = [[i for i, kept in zip(e.ids, e.attention_mask, strict=True) if kept] for e in padded]
    ours = [e.ids for e in embedder.encode(texts)]
    assert ours == theirs
    assert reference.tokenizer.padding is not None  # the model's own tokenizer was left padding


@pytest.mark.parametrize("name", sorted(EDGE_TEXTS))
def test_odd_texts_match_wordllama(embedder: WordLlamaEmbedder, reference: Any, name: str) -> None:
    text = EDGE_TEXTS[name]
    assert_same_vectors(our_vectors(embedder, [text]), wordllama_vectors(reference, [text]))


def test_text_longer_than_one_gather_is_summed_exactly(embedder: WordLlamaEmbedder, reference: Any) -> None:
    text = EDGE_TEXTS["200 KB"]
    assert len(text) > 200_000
    assert len(embedder._tokenizer.encode(text, add_special_tokens=False).ids) > 3 * ROWS_PER_SUM
    # exact: gathering a slice at a time must not change the order of the additions
    assert np.array_equal(our_vectors(embedder, [text]), wordllama_vectors(reference, [text]))


def test_empty_text_gets_a_zero_vector_among_others(embedder: WordLlamaEmbedder, reference: Any) -> None:
    """wordllama divides 0 by 0 here (NaNs and a RuntimeWarning); a zero vector is
    what a text without tokens is, and leaves the other vectors alone."""
    vectors = embedder.embed(["x = 1\n", "", "y = 2\n"])
    assert vectors[1] == [0.0] * embedder.dim
    assert_same_vectors(np.array([vectors[0], vectors[2]], dtype=np.float32),
                        wordllama_vectors(reference, ["x = 1\n", "y = 2\n"]))
    assert embedder.embed([]) == []


def test_two_threads_embedding_at_once_get_what_one_gets(embedder: WordLlamaEmbedder,
                                                         code: list[str]) -> None:
    """The tokenizer is shared without a lock: its Rust encoder releases the GIL."""
    halves = [code[0:1600:2], code[1:1600:2][::-1]]
    alone = [embedder.embed(half) for half in halves]
    together: list[list[list[float]]] = [[], []]
    start = threading.Barrier(2)

    def run(k: int) -> None:
        start.wait()
        for _ in range(2):
            together[k] = embedder.embed(halves[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone
