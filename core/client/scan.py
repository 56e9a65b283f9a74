"""Finding the files of a local workspace and their content hashes, cheaply.

Honours `.gitignore` files at any depth (git's own rules, via pathspec) and a
built-in list of heavy folders. A file is hashed only when its size or mtime
differs from the stat cache; binary files and files over the size limit are
skipped and counted.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec

HEAVY_FOLDERS = frozenset({
    ".git", ".hg", ".svn", "node_modules", ".venv", "venv", "env", "__pycache__",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", "dist", "build", "target",
    ".next", ".cache", ".idea", ".gradle", ".delta-upload",
})
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    sha1: str


@dataclass
class ScanResult:
    files: dict[str, FileState] = field(default_factory=dict)
    skipped_binary: int = 0
    skipped_large: int = 0
    hashed: int = 0


def scan(root: Path, cache: dict[str, FileState], max_file_bytes: int,
         only: set[str] | None = None) -> ScanResult:
    """Every syncable file under `root` (or just the paths in `only`)."""
    result = ScanResult()
    paths = _walk(root) if only is None else (p for p in sorted(only) if (root / p).is_file())
    for relative in paths:
        full = root / relative
        try:
            stat = full.stat()
        except OSError:
            continue
        if stat.st_size > max_file_bytes:
            result.skipped_large += 1
            continue
        known = cache.get(relative)
        if known is not None and (known.size, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            result.files[relative] = known
            continue
        digest = _sha1_if_text(full)
        if digest is None:
            result.skipped_binary += 1
            continue
        result.hashed += 1
        result.files[relative] = FileState(stat.st_size, stat.st_mtime_ns, digest)
    return result


def still_present(root: Path, paths: Iterable[str]) -> set[str]:
    """Those of `paths` that still exist under `root` (as anything, links included):
    a scan that did not report them skipped them, it did not find them gone."""
    return {p for p in paths if os.path.lexists(root / p)}


def _sha1_if_text(path: Path) -> str | None:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        first = handle.read(SNIFF_BYTES)
        if b"\x00" in first:
            return None
        digest.update(first)
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _walk(root: Path) -> Iterator[str]:
    """Relative POSIX paths of regular files, in a stable order, ignores applied."""
    specs: list[tuple[str, pathspec.PathSpec[Any]]] = []
    for folder, dirs, files in os.walk(root):
        relative_folder = os.path.relpath(folder, root).replace(os.sep, "/")
        base = "" if relative_folder == "." else relative_folder + "/"
        specs = [(b, s) for b, s in specs if base.startswith(b)]
        ignore_file = Path(folder) / ".gitignore"
        if ignore_file.is_file():
            lines = ignore_file.read_text(errors="replace").splitlines()
            specs.append((base, pathspec.GitIgnoreSpec.from_lines(lines)))
        dirs[:] = sorted(d for d in dirs if d not in HEAVY_FOLDERS
                         and not os.path.islink(os.path.join(folder, d))
                         and not _ignored(specs, base + d + "/"))
        for name in sorted(files):
            path = base + name
            if (name in HEAVY_FOLDERS  # a worktree's or submodule's `.git` is a file
                    or os.path.islink(os.path.join(folder, name)) or _ignored(specs, path)):
                continue
            yield path


def _ignored(specs: list[tuple[str, pathspec.PathSpec[Any]]], path: str) -> bool:
    return any(spec.match_file(path[len(base):]) for base, spec in specs)
