"""What changed between what the server holds and what the workspace holds now."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from core.client.scan import FileState


@dataclass(frozen=True)
class Change:
    operation: str  # created | updated | deleted | moved
    path: str
    sha1: str | None = None
    size: int = 0
    source: str | None = None
    previous: str | None = None
    mtime_ns: int = 0  # of the bytes actually bundled (0: unknown)


def diff(confirmed: dict[str, str], local: dict[str, FileState],
         scope: set[str] | None = None, kept: frozenset[str] | set[str] = frozenset()) -> list[Change]:
    """Changes that turn `confirmed` ({path: sha1} on the server) into `local`.

    A deleted and a created file with the same content become one `moved`.
    With `scope`, only those paths are considered. A path in `kept` is missing
    from `local` only because the scan filtered it out (it still exists on disk):
    it is neither deleted nor a move source, so the server keeps its copy.
    """
    def within(path: str) -> bool:
        return scope is None or path in scope

    created = [p for p in local if p not in confirmed and within(p)]
    deleted = [p for p in confirmed if p not in local and p not in kept and within(p)]
    updated = [p for p in local if p in confirmed and confirmed[p] != local[p].sha1 and within(p)]
    gone_by_hash: dict[str, list[str]] = defaultdict(list)
    for path in sorted(deleted):
        gone_by_hash[confirmed[path]].append(path)
    changes: list[Change] = []
    moved_sources: set[str] = set()
    for path in sorted(created):
        state = local[path]
        candidates = gone_by_hash.get(state.sha1)
        if candidates:
            source = candidates.pop(0)
            moved_sources.add(source)
            changes.append(Change("moved", path, state.sha1, state.size, source=source))
        else:
            changes.append(Change("created", path, state.sha1, state.size))
    for path in sorted(updated):
        changes.append(Change("updated", path, local[path].sha1, local[path].size,
                              previous=confirmed[path]))
    for path in sorted(deleted):
        if path not in moved_sources:
            changes.append(Change("deleted", path, previous=confirmed[path]))
    return changes
