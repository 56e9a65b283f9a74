"""Git history a client sends with a bundle (`metadata/git_history.json`), kept per workspace.

Each commit is stored once, write-once at `workspaces/<ws>/commits/<commit id>.json`,
however often clients resend it (their watch loop resends the last commits), and is
indexed as one point of the workspace's collection (`core.indexing.commits`). What
is kept is bounded: a message, the touched files and a diff are capped (`bounded`),
so a huge merge commit costs a few hundred KiB at most. A bundle that carries only
history is an ordinary bundle: sequenced, idempotent and replayable like any other.
"""

from __future__ import annotations

import json
from typing import Any

from core.fence import Fence
from core.keys import commit_key
from core.models import GitCommit
from core.storage import ObjectStore
from core.workspace import parallel_map

MAX_MESSAGE = 16 * 1024
MAX_FILES = 2000
MAX_DIFF = 256 * 1024
MAX_FIELD = 512  # author name, date
SUMMARY_DIFF = 2000  # diff characters that go into a commit's indexed text
SUMMARY_FILES = 200
RECORD_FORMAT = 1


def bounded(commit: GitCommit) -> dict[str, Any]:
    """The commit as it is stored and answered: every field capped."""
    files = commit.files or []
    diff = commit.diff or ""
    return {
        "commit_id": commit.commit_id,
        "author_name": (commit.author_name or "")[:MAX_FIELD],
        "authored_date": (commit.authored_date or "")[:MAX_FIELD],
        "message": (commit.message or "")[:MAX_MESSAGE],
        "files": [f[:4096] for f in files[:MAX_FILES]],
        "files_truncated": len(files) > MAX_FILES,
        "diff": diff[:MAX_DIFF],
        "diff_truncated": len(diff) > MAX_DIFF,
    }


def unique(commits: list[GitCommit]) -> list[GitCommit]:
    """Each commit id once, the first spelling kept."""
    seen: dict[str, GitCommit] = {}
    for commit in commits:
        seen.setdefault(commit.commit_id, commit)
    return list(seen.values())


def indexed_text(record: dict[str, Any]) -> str:
    """What a commit is found by: its message, the files it touched and the start of
    its diff (the stat summary and first hunks, where names and changed lines are)."""
    files = record["files"][:SUMMARY_FILES]
    return "\n".join([record["message"], "files: " + " ".join(files), record["diff"][:SUMMARY_DIFF]])


def store_commits(store: ObjectStore, ws: str, commits: list[GitCommit], fence: Fence) -> int:
    """Write each commit not stored yet (write-once); the number written now."""

    def keep(commit: GitCommit) -> bool:
        key = commit_key(ws, commit.commit_id)
        if store.head(key) is not None:
            return False
        body = json.dumps({"format": RECORD_FORMAT, **bounded(commit)}, ensure_ascii=False).encode("utf-8")
        return fence.put_once(key, body, lambda _: True) is body  # `body` back: written now

    with fence.section():
        return sum(parallel_map(store, keep, unique(commits)))
