"""Splitting a file into chunks: by syntax where a grammar is installed, else by lines.

With a tree-sitter grammar (Python, JavaScript, TypeScript/TSX, Go, Rust, Java)
each top-level definition becomes a chunk when it fits in `max_lines`; a larger
one is split into its own children the same way, and whatever stands between
definitions (imports, constants) is gathered into chunks of its own. Without a
grammar, or when parsing fails, the file is cut into windows of `max_lines`
lines that overlap by `overlap` lines.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

WINDOW_LINES = 120
WINDOW_OVERLAP = 20
# recorded by every collection (`Layout`): a change of how files are cut into chunks
# changes the version, and collections chunked otherwise report drift until reindexed
CHUNKER_VERSION = f"defs-1/lines-{WINDOW_LINES}-{WINDOW_OVERLAP}"

# language -> (module, function returning the grammar)
GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
}


@dataclass(frozen=True)
class Chunk:
    start_line: int  # 1-based, inclusive
    end_line: int
    text: str


def chunk_text(text: str, language: str, max_lines: int = WINDOW_LINES,
               overlap: int = WINDOW_OVERLAP) -> list[Chunk]:
    lines = text.splitlines(keepends=True)
    if not lines or not text.strip():
        return []
    parser = _parser(language)
    if parser is not None:
        try:
            tree = parser.parse(text.encode("utf-8"))
            spans = _syntax_spans(tree.root_node, 0, len(lines) - 1, max_lines)
            return [c for c in (_chunk(lines, s, e) for s, e in spans) if c.text.strip()]
        except (RecursionError, ValueError):
            pass
    return _windows(lines, max_lines, overlap)


def _windows(lines: list[str], size: int, overlap: int) -> list[Chunk]:
    step = max(1, size - overlap)
    chunks = []
    for start in range(0, len(lines), step):
        end = min(start + size, len(lines)) - 1
        chunk = _chunk(lines, start, end)
        if chunk.text.strip():
            chunks.append(chunk)
        if end == len(lines) - 1:
            break
    return chunks


def _chunk(lines: list[str], start: int, end: int) -> Chunk:
    return Chunk(start_line=start + 1, end_line=end + 1, text="".join(lines[start : end + 1]))


def _syntax_spans(node: Any, first: int, last: int, max_lines: int) -> list[tuple[int, int]]:
    """0-based inclusive line spans covering [first, last], cut at definition borders."""
    pieces: list[tuple[int, int, bool]] = []  # (start, end, is_definition)
    gap_start = first
    for child in node.children:
        start, end = child.start_point[0], child.end_point[0]
        if end < first or start > last or end - start + 1 < 3:
            continue
        start = max(start, gap_start)
        if start > end:
            continue
        if start > gap_start:
            pieces.extend((s, e, False) for s, e in _cut(gap_start, start - 1, max_lines))
        if end - start + 1 <= max_lines or not child.children:
            pieces.extend((s, e, True) for s, e in _cut(start, end, max_lines))
        else:
            pieces.extend((s, e, True) for s, e in _syntax_spans(child, start, end, max_lines))
        gap_start = end + 1
    if gap_start <= last:
        pieces.extend((s, e, False) for s, e in _cut(gap_start, last, max_lines))
    return _attach_gaps(pieces, max_lines)


def _cut(start: int, end: int, max_lines: int) -> list[tuple[int, int]]:
    return [(s, min(s + max_lines - 1, end)) for s in range(start, end + 1, max_lines)]


def _attach_gaps(pieces: list[tuple[int, int, bool]], max_lines: int) -> list[tuple[int, int]]:
    """Keep definitions whole and apart; a short stretch between them (comments,
    decorators, imports) joins the definition after it when both fit."""
    spans: list[tuple[int, int]] = []
    carry: tuple[int, int] | None = None
    for start, end, definition in pieces:
        if carry is not None and definition and end - carry[0] + 1 <= max_lines and (
            carry[1] - carry[0] + 1 <= max_lines // 4
        ):
            spans.append((carry[0], end))
            carry = None
            continue
        if carry is not None:
            spans.append(carry)
            carry = None
        if definition:
            spans.append((start, end))
        else:
            carry = (start, end)
    if carry is not None:
        spans.append(carry)
    return spans


_local = threading.local()


def _parser(language: str) -> Any:
    """A tree-sitter parser for `language` (one per thread), or None without a grammar."""
    grammar = _grammar(language)
    if grammar is None:
        return None
    parsers = _local.__dict__.setdefault("parsers", {})
    if language not in parsers:
        from tree_sitter import Parser

        parsers[language] = Parser(grammar)
    return parsers[language]


@cache
def _grammar(language: str) -> Any:
    spec = GRAMMARS.get(language)
    if spec is None:
        return None
    try:
        from tree_sitter import Language

        module = importlib.import_module(spec[0])
        return Language(getattr(module, spec[1])())
    except (ImportError, AttributeError, ValueError):
        return None
