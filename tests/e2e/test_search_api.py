"""`/api/v1/search`, `/api/v1/delta/file` and git history, over real HTTP.

One service with API keys for two tenants. Alice uploads what the existing client's
watch loop really sent (`tests/fixtures/ce-client`: renames, a folder rename, then a
git-history-only bundle), so the answers are checked against the tree those five
bundles leave; Bob must never see any of it.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from core.auth import hash_key
from tests.e2e.conftest import StorageProbe
from tests.support.bundles import BundleBuilder, RawMember
from tests.support.service import ServiceProcess

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ce-client"
BUNDLES = ["ce-1-initial", "ce-2-pure-rename", "ce-3-folder-rename", "ce-4-rename-edit-delete",
           "ce-5-git-history-only"]
KEYS = {"alice": "alice-search-key-0123", "bob": "bob-search-key-4567"}
ALICE = {"Authorization": f"Bearer {KEYS['alice']}"}
BOB = {"X-API-Key": KEYS["bob"]}
SHOP = "/work/shop"
CENTS_COMMIT = "1e200858d6393434c33e6b7003c32dcd9ed610c9"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, StorageProbe]]:
    root = tmp_path_factory.mktemp("search-api")
    keys = root / "keys.json"
    keys.write_text(json.dumps({"tenants": {t: [hash_key(k)] for t, k in KEYS.items()}}))
    service = ServiceProcess({"WORK_DIR": str(root / "storage"), "AUTH_MODE": "api_key",
                              "API_KEYS_FILE": str(keys), "FILE_MAX_KB": "1"},
                             root / "service.log").start()
    try:
        for name in BUNDLES:
            answer = service.upload((FIXTURES / f"{name}.tar.gz").read_bytes(), SHOP,
                                    session=KEYS["alice"], source_path="/home/dev/shop")
            assert answer.status_code == 200, answer.text
        yield service, StorageProbe(root=root / "storage")
    finally:
        assert service.stop() == 0


def get(service: ServiceProcess, headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
    return requests.get(service.url + "/api/v1/search", params=params, headers=headers or {}, timeout=30)


def post(service: ServiceProcess, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(service.url + "/api/v1/search", json=body, headers=headers or {}, timeout=30)


def hits(answer: requests.Response) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    return list(answer.json()["hits"])


def test_code_hits_say_where_the_code_is_here_and_on_the_client(shop: tuple[ServiceProcess, StorageProbe]
                                                                ) -> None:
    service, _ = shop
    found = hits(get(service, ALICE, query="round the total of the items to cents", workspace_path=SHOP))
    expected_tree = json.loads((FIXTURES / "expected-tree-after-1-4.json").read_text())
    assert found and {h["path"] for h in found} <= set(expected_tree)  # only what the tree holds now
    pricing = next(h for h in found if h["path"] == "src/pricing.py")
    assert pricing["host_path"] == "/home/dev/shop/src/pricing.py"
    assert pricing["language"] == "python" and pricing["start_line"] == 1 and pricing["end_line"] == 2
    assert "round(sum(i.price for i in items), 2)" in pricing["snippet"]
    assert pricing["snippet_truncated"] is False and isinstance(pricing["score"], float)
    same = hits(post(service, {"query": "round the total of the items to cents", "workspace_path": SHOP},
                     ALICE))
    assert same == found  # GET and POST are one search
    assert all("commit_id" not in h for h in found)  # commits are not code
    by_session = post(service, {"query": "cart", "workspace_path": SHOP, "session": KEYS["alice"]})
    assert by_session.status_code == 200, by_session.text  # the existing clients' credential field


def test_a_delta_is_searchable_as_soon_as_its_upload_answers(shop: tuple[ServiceProcess, StorageProbe]
                                                               ) -> None:
    """Indexed in the same invocation: the first search after the 200 finds the new code."""
    service, _ = shop
    delta = BundleBuilder(collection_name="shop-8d9001d3", workspace_path=SHOP).created(
        "src/coupons.py", b"def apply_frobnicated_coupon(total, pct):\n    return total * (1 - pct)\n")
    assert service.upload(delta.build(), SHOP, session=KEYS["alice"]).status_code == 200
    first = hits(post(service, {"query": "apply_frobnicated_coupon", "workspace_path": SHOP, "limit": 1},
                      ALICE))
    assert [h["path"] for h in first] == ["src/coupons.py"]


def test_filters_narrow_in_the_engine_and_on_the_path(shop: tuple[ServiceProcess, StorageProbe]) -> None:
    service, _ = shop
    query = {"query": "cart item price", "workspace_path": SHOP, "limit": 20}
    everything = {h["path"] for h in hits(post(service, query, ALICE))}
    assert {"src/domain/cart.py", "src/domain/item.py", "README.md"} <= everything
    domain = hits(post(service, {**query, "path_prefix": "src/domain/"}, ALICE))
    assert {h["path"] for h in domain} == {"src/domain/cart.py", "src/domain/item.py"}
    markdown = hits(post(service, {**query, "path_glob": "*.md"}, ALICE))
    assert {h["path"] for h in markdown} == {"README.md"}
    nested = hits(post(service, {**query, "path_glob": "src/**/i*.py"}, ALICE))
    assert {h["path"] for h in nested} == {"src/domain/item.py"}
    one_level = hits(post(service, {**query, "path_glob": "src/*/c*.py"}, ALICE))
    assert {h["path"] for h in one_level} == {"src/domain/cart.py"}
    assert {h["path"] for h in hits(post(service, {**query, "language": "markdown"}, ALICE))} == {"README.md"}
    assert hits(post(service, {**query, "path_prefix": "docs/", "path_glob": "src/*.py"}, ALICE)) == []
    assert len(hits(post(service, {**query, "limit": 2}, ALICE))) == 2


def test_commits_are_kept_once_indexed_and_searched(shop: tuple[ServiceProcess, StorageProbe]) -> None:
    service, probe = shop
    found = hits(get(service, ALICE, query="totals rounded to cents", workspace_path=SHOP, kind="commits"))
    assert found[0]["commit_id"] == CENTS_COMMIT
    assert found[0]["author"] == "Dev" and found[0]["date"] == "Tue Dec 1 07:40:44 2026 +0000"
    assert found[0]["message"].startswith("Move pricing out of the domain package")
    assert "src/pricing.py" in found[0]["files"]
    assert all("path" not in h for h in found)
    touching = {"query": "change", "workspace_path": SHOP, "kind": "commits"}
    assert [h["commit_id"] for h in hits(post(service, {**touching, "path_prefix": "src/pricing"}, ALICE))
            ] == [CENTS_COMMIT]  # the other commit lists no files
    assert [h["commit_id"] for h in hits(post(service, {**touching, "path_glob": "Dockerfile"}, ALICE))
            ] == [CENTS_COMMIT]
    assert post(service, {**touching, "language": "python"}, ALICE).status_code == 400
    ws = service.status(SHOP, session=KEYS["alice"]).json()
    commits = probe.keys(f"workspaces/{ws['workspace_key']}/commits/")
    assert len(commits) == 2
    stored = json.loads(probe.read(f"workspaces/{ws['workspace_key']}/commits/{CENTS_COMMIT}.json"))
    assert stored["diff"].startswith("commit 1e200858") and stored["diff_truncated"] is False
    # the watch loop resends history in later bundles: a new sequence, nothing stored twice
    raw = (FIXTURES / "ce-5-git-history-only.tar.gz").read_bytes()
    again = service.upload(raw, SHOP, session=KEYS["alice"])
    assert again.status_code == 200 and again.json()["duplicate"] is True
    history = next(m for m in _members(raw) if m.name.endswith("metadata/git_history.json"))
    resent = BundleBuilder(collection_name="shop-8d9001d3", workspace_path=SHOP)
    resent.extra_members.append(RawMember(f"{resent.bundle_id}/metadata/git_history.json", history.data))
    answer = service.upload(resent.build(), SHOP, session=KEYS["alice"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["sequence_number"] == ws["last_sequence"] + 1
    assert answer.json()["git_history"] == {"commits": 2, "stored": 0, "indexed": 0}
    assert probe.keys(f"workspaces/{ws['workspace_key']}/commits/") == commits
    assert service.status(SHOP, session=KEYS["alice"]).json()["indexed_points"] == ws["indexed_points"]


def test_a_malformed_history_is_refused_and_nothing_is_written(shop: tuple[ServiceProcess, StorageProbe]
                                                               ) -> None:
    service, probe = shop
    before = probe.keys()
    bad = BundleBuilder(collection_name="shop-8d9001d3", workspace_path=SHOP)
    bad.extra_members.append(RawMember(f"{bad.bundle_id}/metadata/git_history.json",
                                       json.dumps({"commits": [{"commit_id": "../../etc"}]}).encode()))
    refused = service.upload(bad.build(), SHOP, session=KEYS["alice"])
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "INVALID_BUNDLE"
    assert "metadata/git_history.json" in refused.json()["error"]["message"]
    assert probe.keys() == before


def test_a_stored_file_and_lines_of_it(shop: tuple[ServiceProcess, StorageProbe]) -> None:
    service, _ = shop

    def read(headers: dict[str, str], **params: Any) -> requests.Response:
        return requests.get(service.url + "/api/v1/delta/file", params={"workspace_path": SHOP, **params},
                            headers=headers, timeout=30)

    whole = read(ALICE, path="src/pricing.py")
    assert whole.status_code == 200, whole.text
    assert whole.json()["content"] == "def total(items):\n    return round(sum(i.price for i in items), 2)\n"
    assert whole.json()["total_lines"] == 2 and whole.json()["truncated"] is False
    line = read(ALICE, path="src/pricing.py", start_line="2", end_line="2").json()
    assert line["content"].strip() == "return round(sum(i.price for i in items), 2)"
    assert (line["start_line"], line["end_line"]) == (2, 2)
    for params, status, code in [({"path": "src/models/price.py"}, 404, "FILE_NOT_FOUND"),  # renamed away
                                 ({"path": "../etc/passwd"}, 400, "UNSAFE_PATH"),
                                 ({"path": ""}, 400, "UNSAFE_PATH"),
                                 ({"path": "src/pricing.py", "start_line": "3", "end_line": "2"}, 400,
                                  "INVALID_REQUEST"),
                                 ({"path": "src/pricing.py", "start_line": "0"}, 400, "INVALID_REQUEST")]:
        answer = read(ALICE, **params)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), params
    assert read(BOB, path="src/pricing.py").json()["error"]["code"] == "WORKSPACE_NOT_FOUND"
    assert read({}, path="src/pricing.py").status_code == 401
    big = BundleBuilder(collection_name="shop-8d9001d3", workspace_path=SHOP).created(
        "notes/long.txt", "".join(f"line {n:04d} of a long file\n" for n in range(200)).encode())
    assert service.upload(big.build(), SHOP, session=KEYS["alice"]).status_code == 200
    capped = read(ALICE, path="notes/long.txt").json()  # FILE_MAX_KB=1
    assert capped["truncated"] is True and len(capped["content"].encode()) <= 1024
    assert capped["content"].endswith("\n") and capped["total_lines"] is None
    one_line = BundleBuilder(collection_name="shop-8d9001d3", workspace_path=SHOP).created(
        "notes/one-line.txt", b"x" * 3000 + b"\n")
    assert service.upload(one_line.build(), SHOP, session=KEYS["alice"]).status_code == 200
    start = read(ALICE, path="notes/one-line.txt").json()  # the start of a line over the cap, never nothing
    assert start["content"] == "x" * 1024 and start["truncated"] is True and start["end_line"] == 1
    tail = read(ALICE, path="notes/long.txt", start_line="199").json()
    assert tail["content"] == "line 0198 of a long file\nline 0199 of a long file\n"
    assert tail["truncated"] is False and tail["total_lines"] == 200


def test_tenants_never_meet_and_bad_searches_are_refused(shop: tuple[ServiceProcess, StorageProbe]) -> None:
    service, _ = shop
    assert get(service, query="cart", workspace_path=SHOP).status_code == 401
    theirs = get(service, BOB, query="cart", workspace_path=SHOP)
    assert theirs.json()["error"]["code"] == "WORKSPACE_NOT_FOUND"
    whole = hits(get(service, ALICE, query="cart", collection_name="shop-8d9001d3"))
    assert whole and all(h["workspace_key"] for h in whole)
    theirs = get(service, BOB, query="cart", collection_name="shop-8d9001d3")
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "COLLECTION_NOT_FOUND"
    for params in [{"workspace_path": SHOP}, {"query": "x"},
                   {"query": "x", "workspace_path": SHOP, "limit": "0"},
                   {"query": "x", "workspace_path": SHOP, "limit": "101"},
                   {"query": "x", "workspace_path": SHOP, "kind": "docs"},
                   {"query": "x", "workspace_path": SHOP, "colour": "blue"},
                   {"query": "x", "collection_name": "../etc"}]:
        refused = get(service, ALICE, **params)
        assert refused.status_code == 400 and refused.json()["error"]["code"] in (
            "INVALID_REQUEST", "INVALID_COLLECTION"), (params, refused.text)
    assert post(service, ["query"], ALICE).status_code == 400
    assert post(service, {"query": "x" * 70_000}, ALICE).status_code == 413
    assert requests.put(service.url + "/api/v1/search", timeout=10).status_code == 405
    metrics = requests.get(service.url + "/metrics", headers=ALICE, timeout=10).text
    assert 'delta_search_seconds_count{kind="code"}' in metrics
    assert 'delta_search_seconds_count{kind="commits"}' in metrics


def _members(raw: bytes) -> list[RawMember]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw)), mode="r:") as tar:
        return [RawMember(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]
