"""Real source code nobody here wrote: chunks of the Python files installed in the virtualenv."""

from __future__ import annotations

import sysconfig
from functools import cache
from pathlib import Path

from core.indexing.chunker import chunk_text
from core.indexing.languages import decode_text, language_of


@cache
def site_package_chunks(files: int) -> tuple[tuple[str, str], ...]:
    """(path, chunk text) of the first `files` .py files of site-packages, in path order,
    chunked as indexing chunks them: a fixed, varied sample of real code."""
    root = Path(sysconfig.get_paths()["purelib"])
    found: list[tuple[str, str]] = []
    written_here = "__editable__"  # pip's finder for this project, not outside code
    for file in sorted(f for f in root.rglob("*.py") if not f.name.startswith(written_here))[:files]:
        text = decode_text(file.read_bytes())
        if text is None:
            continue
        path = file.relative_to(root).as_posix()
        found.extend((path, chunk.text) for chunk in chunk_text(text, language_of(path)))
    return tuple(found)
