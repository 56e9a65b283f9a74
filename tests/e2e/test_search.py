"""Index code nobody here wrote through the upload endpoint, then find it with `search`.

The corpus is the Python sources of the installed `requests` package. Queries
are the first lines of a few of its docstrings; each must find its file among
the top 5 hits of `delta-upload search`, run as a user would, against the
running service, and with `--direct` against the embedded folder it wrote.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import requests as requests_package

from tests.support.bundles import BundleBuilder
from tests.support.service import ServiceProcess

CLI = Path(sys.executable).with_name("delta-upload")
WORKSPACE = "/work/requests-src"
FUNCTIONS = {  # function -> file in the requests package
    "get_encoding_from_headers": "utils.py",
    "merge_setting": "sessions.py",
    "_basic_auth_str": "auth.py",
    "dict_from_cookiejar": "utils.py",
    "default_user_agent": "utils.py",
}


def docstring_queries(root: Path) -> dict[str, str]:
    """First docstring line of each function in FUNCTIONS, read from the sources."""
    queries = {}
    for name, file in FUNCTIONS.items():
        tree = ast.parse((root / file).read_text())
        node = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)
        doc = ast.get_docstring(node)
        assert doc, f"{file}:{name} has no docstring"
        queries[doc.strip().splitlines()[0]] = file
    return queries


def search(service: ServiceProcess, query: str, *extra: str, env: dict[str, str] | None = None
           ) -> list[dict[str, object]]:
    """`delta-upload search` as a user runs it: against the running service by default."""
    done = subprocess.run(
        [str(CLI), "search", query, "--workspace-path", WORKSPACE, "--collection", "corpus",
         "--limit", "5", "--json", *extra],
        env=env or {**service.env, "DELTA_UPLOAD_ENDPOINT": service.url},
        capture_output=True, text=True, timeout=120, check=True,
    )
    return list(json.loads(done.stdout))


def test_docstring_queries_find_their_files_and_deletes_leave_search(tmp_path: Path) -> None:
    """While the service runs: found through the endpoint, a delete is out of search by the
    time its upload answers (indexed in the same invocation), and `--direct` reads the
    embedded folder once the service is stopped."""
    source = Path(requests_package.__file__).parent
    builder = BundleBuilder(collection_name="corpus")
    files = sorted(source.glob("*.py"))
    for path in files:
        builder.created(f"requests/{path.name}", path.read_bytes())
    env = {"WORK_DIR": str(tmp_path / "storage"), "QDRANT_URL": str(tmp_path / "qdrant")}
    service = ServiceProcess(env, tmp_path / "service.log").start()
    try:
        first = service.upload(builder.build(), WORKSPACE)
        assert first.status_code == 200, first.text
        indexing = first.json()["indexing"]
        assert indexing["points_upserted"] >= len(files) and indexing["chunks_embedded"] > 0
        for query, file in docstring_queries(source).items():
            hits = search(service, query)
            assert f"requests/{file}" in [h["path"] for h in hits], (query, hits)
            assert all({"path", "start_line", "end_line", "score", "snippet"} <= set(h) for h in hits)
        text = subprocess.run([str(CLI), "search", "basic auth header", "--workspace-path", WORKSPACE,
                               "--endpoint", service.url], env=service.env, capture_output=True,
                              text=True, timeout=120, check=True).stdout
        assert "requests/auth.py:" in text and "score=" in text
        gone = service.upload(BundleBuilder(collection_name="corpus").deleted("requests/auth.py")
                              .build(), WORKSPACE)
        assert gone.status_code == 200 and gone.json()["indexing"]["points_deleted"] > 0
        # the first search after the upload's 200 already sees the delete: no indexing lag
        assert "requests/auth.py" not in [h["path"] for h in search(service, "Returns a Basic Auth string.")]
    finally:
        assert service.stop() == 0
    hits = search(service, "Sets the encoding from the headers", "--direct", env=service.env)
    assert "requests/utils.py" in [h["path"] for h in hits]
    assert "requests/auth.py" not in [h["path"] for h in search(service, "Returns a Basic Auth string.",
                                                                "--direct", env=service.env)]


def test_search_by_path_follows_the_repo_identity_the_workspace_was_uploaded_with(
        tmp_path: Path) -> None:
    """Status and manifest follow a path to its latest repo identity; so does search,
    and without --collection it searches the workspace's own collection."""
    source = Path(requests_package.__file__).parent
    builder = BundleBuilder(collection_name="ided")
    builder.created("requests/auth.py", (source / "auth.py").read_bytes())
    env = {"WORK_DIR": str(tmp_path / "storage"), "QDRANT_URL": str(tmp_path / "qdrant")}
    service = ServiceProcess(env, tmp_path / "service.log").start()
    try:
        uploaded = service.upload(builder.build(), "/work/ided", logical_repo_id="git:0123456789abcdef")
        assert uploaded.status_code == 200, uploaded.text
        assert service.status("/work/ided").json()["last_sequence"] == 1
        cli = {**service.env, "DELTA_UPLOAD_ENDPOINT": service.url}
        done = subprocess.run([str(CLI), "search", "Returns a Basic Auth string.", "--workspace-path",
                               "/work/ided", "--json"], env=cli, capture_output=True, text=True,
                              timeout=120, check=True)
        assert "requests/auth.py" in [h["path"] for h in json.loads(done.stdout)]
        assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
        other = subprocess.run([str(CLI), "search", "Returns a Basic Auth string.", "--workspace-path",
                                "/work/ided", "--logical-repo-id", "git:ffffffffffffffff"],
                               env=cli, capture_output=True, text=True, timeout=120)
        assert other.returncode == 1 and "WORKSPACE_NOT_FOUND" in other.stderr, other.stderr
    finally:
        assert service.stop() == 0
