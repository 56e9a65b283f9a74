"""The workspace's repo identity (`logical_repo_id`), exactly as the existing clients compute it.

wire-format.md, "Repo identity": inside a git repository the identity is

    "git:" + sha1(<absolute git common dir>)[:16]

where the common dir is what `git -C <workspace> rev-parse --git-common-dir`
prints, taken relative to the workspace when git prints a relative path and
then resolved. Every worktree and sub-folder of one clone therefore shares one
identity. Anywhere else (no git on PATH, not a repository, git failing) it is

    "fs:" + sha1(<resolved workspace path>)[:16]

Both hashes are the lower-case hex SHA-1 of the path's UTF-8 bytes. Together
with `workspace_path=/work/<folder name>` this is what puts a folder pushed by
either client into one server-side workspace.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 10.0


def repo_identity(workspace: Path) -> str:
    """`git:<16 hex>` of the git common dir, else `fs:<16 hex>` of the folder."""
    root = workspace.resolve()
    common = git_common_dir(root)
    if common is not None:
        return "git:" + _sha1_16(str(common))
    return "fs:" + _sha1_16(str(root))


def git_common_dir(root: Path) -> Path | None:
    """The absolute, resolved git common dir of the repository holding `root`, if any."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, "-C", str(root), "rev-parse", "--git-common-dir"],
            capture_output=True, timeout=GIT_TIMEOUT_S, check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    printed = done.stdout.decode("utf-8", errors="surrogateescape").strip()
    if done.returncode != 0 or not printed:
        return None
    common = Path(printed)
    return (common if common.is_absolute() else root / common).resolve()


def _sha1_16(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", errors="surrogateescape")).hexdigest()[:16]
