"""`delta-upload` and the existing Context-Engine clients name a folder the same way.

The expected identity is computed here from git itself, not from the client's
code; "the existing client" is simulated with its wire-format upload (multipart
`workspace_path=/work/<leaf>`, `logical_repo_id`, `force=False`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import requests

from core.client import RemoteUploadClient
from tests.e2e.test_client import CLI, Server, make_workspace
from tests.e2e.test_client import server as server  # the same running service and proxy
from tests.support.bundles import BundleBuilder


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                          cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def git_repo(folder: Path, files: dict[str, bytes]) -> Path:
    make_workspace(folder, files)
    git("init", "-q", cwd=folder)
    return folder


def sent_files(root: Path) -> dict[str, bytes]:
    """What a push sends: every file but git's own."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def expected_git_identity(workspace: Path) -> str:
    printed = Path(git("rev-parse", "--git-common-dir", cwd=workspace))
    common = (printed if printed.is_absolute() else workspace / printed).resolve()
    return "git:" + hashlib.sha1(str(common).encode("utf-8")).hexdigest()[:16]


def status(server: Server, leaf: str, **params: str) -> dict[str, object]:
    answer = requests.get(server.proxy.url + "/api/v1/delta/status",
                          params={"workspace_path": f"/work/{leaf}", **params}, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def existing_client_upload(server: Server, leaf: str, repo_id: str, builder: BundleBuilder) -> int:
    """What remote_upload_client.py sends: server-assigned sequence, force=False."""
    builder.workspace_path = f"/work/{leaf}"
    answer = requests.post(server.proxy.url + "/api/v1/delta/upload", data={
        "workspace_path": f"/work/{leaf}", "collection_name": "", "force": "False",
        "source_path": f"/home/dev/{leaf}", "logical_repo_id": repo_id,
    }, files={"bundle": ("bundle.tar.gz", builder.build(), "application/gzip")}, timeout=60)
    assert answer.status_code == 200 and answer.json()["success"] is True, answer.text
    return int(answer.json()["sequence_number"])


def push(server: Server, workspace: Path, cache: Path, *extra: str,
         env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run([str(CLI), "push", str(workspace),
                           "--endpoint", server.proxy.url, "--cache-dir", str(cache), "--json", *extra],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_push_sends_the_git_common_dir_identity_from_any_worktree(server: Server, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "proj", {"a.py": b"a = 1\n"})
    git("add", "a.py", cwd=repo)
    git("commit", "-q", "-m", "one", cwd=repo)
    identity = expected_git_identity(repo)
    assert push(server, repo, tmp_path / "cache")["last_sequence"] == 1
    assert status(server, "proj", logical_repo_id=identity)["last_sequence"] == 1
    other = tmp_path / "elsewhere" / "proj"  # a second worktree of the same clone, same leaf
    git("worktree", "add", "-q", str(other), cwd=repo)
    assert expected_git_identity(other) == identity
    (other / "b.py").write_bytes(b"b = 2\n")
    assert push(server, other, tmp_path / "cache")["last_sequence"] == 2
    assert status(server, "proj", logical_repo_id=identity)["last_sequence"] == 2


def test_outside_git_or_without_git_the_identity_is_the_folder(server: Server, tmp_path: Path) -> None:
    plain = make_workspace(tmp_path / "plain", {"a.py": b"a = 1\n"})
    push(server, plain, tmp_path / "cache")
    folder_id = "fs:" + hashlib.sha1(str(plain.resolve()).encode("utf-8")).hexdigest()[:16]
    assert status(server, "plain", logical_repo_id=folder_id)["last_sequence"] == 1
    repo = git_repo(tmp_path / "nogit", {"a.py": b"a = 1\n"})
    no_git = {**os.environ, "PATH": str(tmp_path / "empty-bin")}
    push(server, repo, tmp_path / "cache", env=no_git)
    repo_fs_id = "fs:" + hashlib.sha1(str(repo.resolve()).encode("utf-8")).hexdigest()[:16]
    assert status(server, "nogit", logical_repo_id=repo_fs_id)["last_sequence"] == 1
    push(server, repo, tmp_path / "cache", "--logical-repo-id", "git:00000000000000aa")
    assert status(server, "nogit", logical_repo_id="git:00000000000000aa")["last_sequence"] == 1


def test_existing_client_first_then_delta_upload_continue_one_workspace(
        server: Server, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "shared", {"a.py": b"a = 1\n", "b.py": b"b = 2\n"})
    identity = expected_git_identity(repo)
    assert existing_client_upload(server, "shared", identity,
                                  BundleBuilder().created("a.py", b"a = 1\n")) == 1
    first = status(server, "shared")
    pushed = push(server, repo, tmp_path / "cache")
    assert pushed["operations"] == {"created": 1}, "a.py was already there: only b.py is sent"
    after = status(server, "shared", logical_repo_id=identity)
    assert after["last_sequence"] == 2 and after["workspace_key"] == first["workspace_key"]
    assert status(server, "shared")["workspace_key"] == first["workspace_key"]
    assert server.tree(str(first["workspace_key"])) == sent_files(repo)


def test_delta_upload_first_then_existing_client_continue_one_workspace(
        server: Server, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "shared", {"a.py": b"a = 1\n"})
    identity = expected_git_identity(repo)
    assert push(server, repo, tmp_path / "cache")["last_sequence"] == 1
    first = status(server, "shared")
    assert first["last_sequence"] == 1
    assert existing_client_upload(server, "shared", identity,
                                  BundleBuilder().created("c.py", b"c = 3\n")) == 2
    after = status(server, "shared")
    assert after["last_sequence"] == 2 and after["workspace_key"] == first["workspace_key"]
    assert status(server, "shared", logical_repo_id=identity)["workspace_key"] == first["workspace_key"]
    (repo / "c.py").write_bytes(b"c = 3\n")
    (repo / "d.py").write_bytes(b"d = 4\n")
    again = push(server, repo, tmp_path / "cache")
    assert again["operations"] == {"created": 1} and again["last_sequence"] == 3


def test_files_the_filters_skip_are_never_deleted_on_the_server(server: Server, tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "repo", {"a.py": b"a = 1\n", "notes.md": b"# notes\n",
                                            "data.txt": b"plain text\n", "big.txt": b"small\n"})
    with RemoteUploadClient(server.proxy.url, ws, cache_dir=tmp_path / "cache",
                            max_file_mb=1) as sync:
        assert sync.sync().operations == {"created": 4}
        ws_key = str(sync.status()["workspace_key"])
        held = server.tree(ws_key)
        (ws / "data.txt").write_bytes(b"now\x00binary\n")         # binary now
        (ws / "big.txt").write_bytes(b"x" * (2 * 1024 * 1024))   # too large now
        (ws / ".gitignore").write_bytes(b"notes.md\n")           # ignored now
        second = sync.sync()
        assert second.success and second.operations == {"created": 1}, second  # .gitignore only
        assert server.tree(ws_key) == held | {".gitignore": b"notes.md\n"}
        assert sync.process_and_upload_changes(["data.txt"])
        assert "data.txt" in server.tree(ws_key)
        (ws / "notes.md").unlink()  # really gone: now it is deleted
        assert sync.sync().operations == {"deleted": 1}
    assert "notes.md" not in server.tree(ws_key)


def test_a_binary_file_another_client_sent_survives_a_fresh_push(server: Server, tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "pics", {"a.py": b"a = 1\n", "logo.png": b"\x89PNG\x00\x01"})
    with RemoteUploadClient(server.proxy.url, ws, cache_dir=tmp_path / "cache") as sync:
        existing_client_upload(server, "pics", sync.logical_repo_id,
                               BundleBuilder().created("logo.png", b"\x89PNG\x00\x01"))
        result = sync.sync()  # no record yet: rebuilt from the manifest, which lists logo.png
        assert result.success and result.resynced and result.operations == {"created": 1}
        assert set(server.tree(str(sync.status()["workspace_key"]))) == {"a.py", "logo.png"}


def test_a_missing_folder_is_a_failure_not_an_empty_workspace(server: Server, tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "gone", {"a.py": b"a = 1\n"})
    with RemoteUploadClient(server.proxy.url, ws, cache_dir=str(tmp_path / "cache")) as sync:
        assert sync.sync().success
        key = str(sync.status()["workspace_key"])
        (ws / "a.py").unlink()
        ws.rmdir()
        failed = sync.sync()
        assert not failed.success and "not a folder" in (failed.error or "")
        assert not sync.process_and_upload_changes(["a.py"])
    assert server.tree(key) == {"a.py": b"a = 1\n"}
    with RemoteUploadClient(server.proxy.url, tmp_path / "never", cache_dir=tmp_path / "c") as sync:
        assert not sync.sync().success
