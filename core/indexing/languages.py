"""Which language a path is written in, and whether its bytes are text worth indexing."""

from __future__ import annotations

from pathlib import PurePosixPath

EXTENSIONS = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".go": "go", ".rs": "rust", ".java": "java",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".cs": "csharp",
    ".rb": "ruby", ".php": "php", ".kt": "kotlin", ".swift": "swift", ".scala": "scala",
    ".sh": "shell", ".bash": "shell", ".sql": "sql", ".md": "markdown", ".rst": "rst",
    ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".html": "html",
    ".css": "css", ".txt": "text",
}
NAMES = {"Makefile": "make", "Dockerfile": "dockerfile"}
SNIFF_BYTES = 8192


def language_of(path: str) -> str:
    name = PurePosixPath(path).name
    if name in NAMES:
        return NAMES[name]
    return EXTENSIONS.get(PurePosixPath(path).suffix.lower(), "unknown")


def decode_text(data: bytes) -> str | None:
    """The text of `data`, or None when it looks binary (NUL bytes or not UTF-8)."""
    if b"\x00" in data[:SNIFF_BYTES]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
