"""One contract suite for every storage backend (filesystem, moto S3), via the `store` fixture.

The race tests start several writers — threads, and separately processes made
with 'spawn' — that each build their own store from plain parameters and do
read-modify-write increments with `get` + `put_if_match`; no increment may be
lost, and of several `put_if_absent` creators exactly one may win.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from core.errors import DirectUploadUnavailable, StorageUnavailable
from core.storage.base import (
    Expect,
    FolderEntries,
    ObjectNotFound,
    ObjectStore,
    PreconditionFailed,
    StoredObject,
)
from core.storage.filesystem import TEMP_MARK, FilesystemStore
from core.storage.s3 import S3Store

COUNTER_KEY = "workspaces/ws/head.json"
WRITERS = 8
PROCESSES = 4
MAX_ATTEMPTS = 2000

# Tricky for byte order: '!' '-' '.' sort before '/', '0' and letters after it; upper
# case before lower; NFC and NFD spellings of é are different keys; astral code points.
TRICKY_KEYS = [
    "a!", "a-c", "a.txt", "a/b", "a/b0", "a/c/d/e.txt", "a0", "ab",
    "b/Zeta", "b/alpha", "b/é.txt", "b/e\u0301.txt", "b/日本.md", "b/😀",
    "c d/x y.txt", "c d/x+y%z.txt",
    "x/y-1", "x/y.2", "x/y/z", "x/y0", "z",
]


# --- plain-parameter stores, for threads and spawned processes --------------------------------
def backend_params(store: ObjectStore) -> dict[str, str]:
    if isinstance(store, FilesystemStore):
        return {"kind": "filesystem", "root": str(store.root)}
    assert isinstance(store, S3Store)
    assert store.endpoint_url is not None
    return {"kind": "s3", "endpoint": store.endpoint_url, "bucket": store.bucket,
            "prefix": store.prefix, "scratch": str(store.scratch_dir)}


def open_backend(params: dict[str, str]) -> ObjectStore:
    if params["kind"] == "filesystem":
        return FilesystemStore(Path(params["root"]))
    return S3Store(params["bucket"], params["prefix"], endpoint_url=params["endpoint"],
                   region="us-east-1", addressing_style="path", max_connections=4,
                   scratch_dir=Path(params["scratch"]))


def increment(params: dict[str, str], writer: str, times: int) -> int:
    """Add `times` increments to the counter; returns how many conditional writes were lost."""
    store = open_backend(params)
    lost = 0
    for n in range(times):
        for _ in range(MAX_ATTEMPTS):
            current = store.get(COUNTER_KEY)
            record = json.loads(current.body)
            record["count"] += 1
            record["log"].append(f"{writer}:{n}")
            try:
                store.put_if_match(COUNTER_KEY, json.dumps(record).encode(), current.etag)
                break
            except PreconditionFailed:
                lost += 1
        else:
            raise AssertionError(f"{writer} gave up after {MAX_ATTEMPTS} attempts")
    return lost


def create(params: dict[str, str], writer: str) -> bool:
    try:
        open_backend(params).put_if_absent("claims/one.json", writer.encode())
    except PreconditionFailed:
        return False
    return True


def _process_main(queue: Any, barrier: Any, index: int, target: Callable[..., Any], args: tuple[Any, ...]
                  ) -> None:
    try:
        barrier.wait(timeout=120)
        queue.put((index, target(*args), None))
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put((index, None, repr(exc)))


def run_in_processes(target: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
    """Run `target(*args)` once per entry of `calls`, each in its own spawned process, all at once."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(len(calls))
    processes = [ctx.Process(target=_process_main, args=(queue, barrier, i, target, args))
                 for i, args in enumerate(calls)]
    for process in processes:
        process.start()
    try:
        replies = [queue.get(timeout=180) for _ in calls]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
            process.close()
        queue.close()
        queue.join_thread()
    errors = [error for _, _, error in replies if error]
    assert not errors, errors
    return [result for _, result, _ in sorted(replies, key=lambda reply: reply[0])]


def run_in_threads(target: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
    barrier = threading.Barrier(len(calls))

    def start(args: tuple[Any, ...]) -> Any:
        barrier.wait(timeout=60)
        return target(*args)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(start, calls))


def write_file(tmp_path: Path, body: bytes) -> tuple[Path, str]:
    path = tmp_path / f"source-{hashlib.sha1(body).hexdigest()[:8]}"
    path.write_bytes(body)
    return path, hashlib.sha1(body).hexdigest()


def plant_unfinished_write(store: ObjectStore, key: str) -> None:
    """Leave behind what a writer that crashed mid-write leaves on this backend."""
    if isinstance(store, FilesystemStore):
        stray = store.root / f"{key}{TEMP_MARK}0123abcd"
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"half")
        (store.scratch_dir / "upload.part").write_bytes(b"half")
    else:
        assert isinstance(store, S3Store)
        upload = store.client.create_multipart_upload(Bucket=store.bucket, Key=store.prefix + key)
        store.client.upload_part(Bucket=store.bucket, Key=store.prefix + key, PartNumber=1,
                                 UploadId=upload["UploadId"], Body=b"half")


# --- reads and plain writes ----------------------------------------------------------------------
def test_put_then_get_round_trips_and_missing_is_not_found(store: ObjectStore) -> None:
    etag = store.put("docs/readme.md", b"hello\n")
    stored = store.get("docs/readme.md")
    assert stored.body == b"hello\n"
    assert stored.etag == etag
    assert store.put("empty", b"") and store.get("empty").body == b""
    with pytest.raises(ObjectNotFound):
        store.get("docs/missing.md")
    with pytest.raises(ObjectNotFound):
        store.get("docs")  # a "folder" is not an object


def test_head_tells_size_etag_and_sha1(store: ObjectStore, tmp_path: Path) -> None:
    body = b"print('hi')\n" * 100
    source, sha1 = write_file(tmp_path, body)
    store.put_file("tree/app.py", source, sha1)
    info = store.head("tree/app.py")
    assert info is not None
    assert info.size == len(body)
    assert info.sha1 == sha1
    assert info.etag == store.get("tree/app.py").etag
    assert source.exists()
    assert store.head("tree/missing.py") is None
    assert store.head("tree") is None


def test_download_writes_the_bytes_to_a_local_file(store: ObjectStore, tmp_path: Path) -> None:
    store.put("bundles/b1.tar.gz", b"\x1f\x8b bytes")
    store.download("bundles/b1.tar.gz", tmp_path / "b1")
    assert (tmp_path / "b1").read_bytes() == b"\x1f\x8b bytes"
    with pytest.raises(ObjectNotFound):
        store.download("bundles/missing.tar.gz", tmp_path / "missing")


def test_put_file_consume_moves_the_source(store: ObjectStore, tmp_path: Path) -> None:
    source, sha1 = write_file(tmp_path, b"moved")
    store.put_file("tree/moved.txt", source, sha1, consume=True)
    assert not source.exists()
    assert store.get("tree/moved.txt").body == b"moved"


def test_put_file_if_absent_writes_once(store: ObjectStore, tmp_path: Path) -> None:
    first, first_sha1 = write_file(tmp_path, b"first")
    second, second_sha1 = write_file(tmp_path, b"second")
    assert store.put_file_if_absent("bundles/ws/b1.tar.gz", first, first_sha1) is True
    assert store.put_file_if_absent("bundles/ws/b1.tar.gz", second, second_sha1) is False
    assert store.get("bundles/ws/b1.tar.gz").body == b"first"
    info = store.head("bundles/ws/b1.tar.gz")
    assert info is not None and info.sha1 == first_sha1


def test_copy_keeps_content_and_sha1(store: ObjectStore, tmp_path: Path) -> None:
    source, sha1 = write_file(tmp_path, b"content to copy")
    store.put_file("tree/old/name.txt", source, sha1)
    store.copy("tree/old/name.txt", "tree/new/name.txt")
    assert store.get("tree/new/name.txt").body == b"content to copy"
    info = store.head("tree/new/name.txt")
    assert info is not None and info.sha1 == sha1 and info.size == len(b"content to copy")
    assert store.get("tree/old/name.txt").body == b"content to copy"
    with pytest.raises(ObjectNotFound):
        store.copy("tree/missing.txt", "tree/elsewhere.txt")


def test_delete_removes_and_tolerates_missing(store: ObjectStore) -> None:
    store.put("workspaces/ws/tree/deep/er/file.txt", b"x")
    store.put("workspaces/ws/tree/keep.txt", b"y")
    store.delete("workspaces/ws/tree/deep/er/file.txt")
    with pytest.raises(ObjectNotFound):
        store.get("workspaces/ws/tree/deep/er/file.txt")
    store.delete("workspaces/ws/tree/deep/er/file.txt")
    store.delete("never/existed.txt")
    assert list(store.list("workspaces/")) == ["workspaces/ws/tree/keep.txt"]
    store.put("workspaces/ws/tree/deep/er/file.txt", b"again")
    assert store.get("workspaces/ws/tree/deep/er/file.txt").body == b"again"


# --- conditional writes ----------------------------------------------------------------------------
def test_tree_writes_with_an_expectation_land_only_on_that_state(store: ObjectStore, tmp_path: Path) -> None:
    """What `core.fence` relies on: a write conditional on an etag (or on absence)
    is refused once the key moved on, and accepted while it has not."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"one\n")
    second.write_bytes(b"two\n")
    sha1 = {path: hashlib.sha1(path.read_bytes()).hexdigest() for path in (first, second)}
    store.put_file("t/a", first, sha1[first], expect=Expect(None))
    with pytest.raises(PreconditionFailed):
        store.put_file("t/a", second, sha1[second], expect=Expect(None))
    held = store.head("t/a")
    assert held is not None
    with pytest.raises(PreconditionFailed):
        store.put_file("t/a", second, sha1[second], expect=Expect("0" * 32))
    with pytest.raises(PreconditionFailed):
        store.put_file("t/missing", second, sha1[second], expect=Expect(held.etag))
    store.put_file("t/a", second, sha1[second], expect=Expect(held.etag))
    assert store.get("t/a").body == b"two\n"
    now = store.head("t/a")
    assert now is not None and now.sha1 == sha1[second]
    with pytest.raises(PreconditionFailed):  # the old etag no longer opens the key
        store.put_file("t/a", first, sha1[first], expect=Expect(held.etag))

    with pytest.raises(PreconditionFailed):
        store.copy("t/a", "t/b", expect=Expect(now.etag))  # t/b holds nothing
    store.copy("t/a", "t/b", expect=Expect(None))
    copied = store.head("t/b")
    assert store.get("t/b").body == b"two\n" and copied is not None and copied.sha1 == sha1[second]
    with pytest.raises(PreconditionFailed):
        store.copy("t/a", "t/b", expect=Expect(None))


def test_a_delete_with_a_stale_etag(store: ObjectStore, request: pytest.FixtureRequest) -> None:
    """Filesystem, AWS S3 and moto keep an object a stale If-Match delete names; Ceph
    RGW 16 deletes it regardless (docs/storage-layout.md, "What remains on S3")."""
    store.put("t/d", b"kept")
    rgw = request.node.callspec.params["store"] == "rgw"
    with suppress(PreconditionFailed):
        store.delete("t/d", expect=Expect("0" * 32))
    assert (store.head("t/d") is None) == rgw
    store.put("t/d", b"kept")
    info = store.head("t/d")
    assert info is not None
    store.delete("t/d", expect=Expect(info.etag))
    assert store.head("t/d") is None
    store.delete("t/never", expect=Expect("0" * 32))  # nothing there: nothing to do


def test_put_if_absent_succeeds_once(store: ObjectStore) -> None:
    etag = store.put_if_absent("workspaces/ws/head.json", b'{"seq": 0}')
    assert store.get("workspaces/ws/head.json").etag == etag
    with pytest.raises(PreconditionFailed):
        store.put_if_absent("workspaces/ws/head.json", b'{"seq": 99}')
    assert store.get("workspaces/ws/head.json").body == b'{"seq": 0}'


def test_put_if_match_needs_the_current_etag(store: ObjectStore) -> None:
    first = store.put_if_absent("head.json", b'{"seq": 1}')
    second = store.put_if_match("head.json", b'{"seq": 2}', first)
    assert second != first
    assert store.get("head.json") == StoredObject(body=b'{"seq": 2}', etag=second)
    with pytest.raises(PreconditionFailed):
        store.put_if_match("head.json", b'{"seq": 3}', first)
    assert store.get("head.json").body == b'{"seq": 2}'
    third = store.put_if_match("head.json", b'{"seq": 3}', second)
    assert store.get("head.json").etag == third


def test_put_if_match_on_a_missing_key_fails_the_precondition(store: ObjectStore) -> None:
    etag = store.put("elsewhere.json", b"{}")
    with pytest.raises(PreconditionFailed):
        store.put_if_match("missing.json", b"{}", etag)
    with pytest.raises(ObjectNotFound):
        store.get("missing.json")


# --- listing -------------------------------------------------------------------------------------------
def test_list_is_in_byte_order_with_prefix_and_start_after(store: ObjectStore) -> None:
    for key in TRICKY_KEYS:
        store.put(key, key.encode())
    ordered = sorted(TRICKY_KEYS)
    assert ordered == sorted(TRICKY_KEYS, key=lambda k: k.encode("utf-8"))
    assert list(store.list("")) == ordered
    prefixes = ["a", "a/", "a/b", "a/c/", "b/", "b/e", "c d/", "x/y", "x/y/", "z", "nothing", "a/c/d/e.txt/"]
    for prefix in prefixes:
        assert list(store.list(prefix)) == [k for k in ordered if k.startswith(prefix)], prefix
    for after in [*ordered, "", "a", "a/", "a/c", "a/c/", "b", "b/", "x/y", "x/y/", "zz"]:
        assert list(store.list("", start_after=after)) == [k for k in ordered if k > after], after
    for prefix, after in [("a/", "a/b"), ("a/", "a/b0"), ("x/", "x/y-1"), ("x/", "x/y.2"), ("b/", "b/e")]:
        expected = [k for k in ordered if k.startswith(prefix) and k > after]
        assert list(store.list(prefix, start_after=after)) == expected, (prefix, after)


def test_list_folder_names_one_level_files_and_folders(store: ObjectStore) -> None:
    for key in TRICKY_KEYS:
        store.put(key, key.encode())
    for prefix in ["", "a/", "a/c/", "b/", "x/", "nothing/", "a/c/d/e.txt/"]:
        below = [k[len(prefix):] for k in TRICKY_KEYS if k.startswith(prefix)]
        entries = store.list_folder(prefix)
        assert entries.files == {name for name in below if "/" not in name}, prefix
        assert entries.folders == {name.split("/")[0] for name in below if "/" in name}, prefix


def test_a_folder_whose_last_object_is_deleted_is_gone(store: ObjectStore) -> None:
    store.put("ws/tree/docs/tree/deep/a.md", b"a")
    store.put("ws/tree/docs/b.md", b"b")
    store.delete("ws/tree/docs/tree/deep/a.md")
    assert store.list_folder("ws/tree/docs/") == FolderEntries(files=frozenset({"b.md"}), folders=frozenset())
    assert not store.is_folder("ws/tree/docs/tree")
    store.delete("ws/tree/docs/b.md")
    assert store.list_folder("") == FolderEntries(files=frozenset(), folders=frozenset())


def test_list_does_not_show_temporary_or_internal_files(store: ObjectStore) -> None:
    store.put_if_absent("workspaces/ws/head.json", b"{}")
    store.put("workspaces/ws/tree/a.txt", b"a")
    plant_unfinished_write(store, "workspaces/ws/tree/b.txt")
    plant_unfinished_write(store, "bundles/ws/b2.tar.gz")
    assert list(store.list("")) == ["workspaces/ws/head.json", "workspaces/ws/tree/a.txt"]
    assert list(store.list("workspaces/ws/tree/")) == ["workspaces/ws/tree/a.txt"]
    assert list(store.list("bundles/")) == []
    assert store.list_folder("workspaces/ws/tree/").files == {"a.txt"}
    assert store.list_folder("").files == set() and "workspaces" in store.list_folder("").folders


# --- races -------------------------------------------------------------------------------------------------
def _start_counter(store: ObjectStore) -> None:
    store.put_if_absent(COUNTER_KEY, json.dumps({"count": 0, "log": []}).encode())


def _assert_counter(store: ObjectStore, total: int) -> None:
    record = json.loads(store.get(COUNTER_KEY).body)
    assert record["count"] == total
    assert len(record["log"]) == len(set(record["log"])) == total


@pytest.mark.parametrize(("runner", "writers", "each"), [
    (run_in_threads, WRITERS, 5), (run_in_processes, PROCESSES, 10),
], ids=["threads", "processes"])
def test_writers_racing_on_put_if_match_lose_no_increment(
    store: ObjectStore, runner: Any, writers: int, each: int
) -> None:
    _start_counter(store)
    params = backend_params(store)
    lost = runner(increment, [(params, f"w{i}", each) for i in range(writers)])
    _assert_counter(store, writers * each)
    print(f"{store.kind}: {sum(lost)} conditional writes lost and retried")


def test_threads_racing_on_put_if_absent_have_one_winner(store: ObjectStore) -> None:
    params = backend_params(store)
    won = run_in_threads(create, [(params, f"t{i}") for i in range(WRITERS)])
    assert won.count(True) == 1
    assert store.get("claims/one.json").body == f"t{won.index(True)}".encode()


def test_processes_racing_on_put_if_absent_have_one_winner(store: ObjectStore) -> None:
    params = backend_params(store)
    won = run_in_processes(create, [(params, f"p{i}") for i in range(PROCESSES)])
    assert won.count(True) == 1
    assert store.get("claims/one.json").body == f"p{won.index(True)}".encode()


# --- an unreachable S3 -------------------------------------------------------------------------------------
def test_s3_at_a_closed_port_is_storage_unavailable(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    store = S3Store("bucket", "svc", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1",
                    addressing_style="path", max_connections=2, scratch_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        store.get("workspaces/ws/head.json")
    elapsed = time.monotonic() - started
    with pytest.raises(StorageUnavailable):
        store.ping()
    print(f"get() against a closed port failed after {elapsed:.2f}s")
    assert elapsed < 10


def test_a_presigned_put_is_signed_with_sigv4_and_works(store: ObjectStore,
                                                       request: pytest.FixtureRequest) -> None:
    """Direct uploads hand clients a presigned PUT: SigV4 query parameters (never SigV2's
    AWSAccessKeyId/Signature/Expires), expiring when asked, and accepted by the store."""
    if request.node.callspec.params["store"] == "filesystem":
        with pytest.raises(DirectUploadUnavailable):
            store.presign_put("incoming/ws/b/t.tar.gz", 900)
        return
    url = store.presign_put("incoming/ws/b/t.tar.gz", 900)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["900"]
    assert query["X-Amz-Credential"][0].endswith("/us-east-1/s3/aws4_request")
    assert len(query["X-Amz-Signature"][0]) == 64 and "host" in query["X-Amz-SignedHeaders"][0]
    assert not {"AWSAccessKeyId", "Signature", "Expires"} & set(query)
    assert requests.put(url, data=b"bundle bytes", timeout=30).status_code == 200
    assert store.get("incoming/ws/b/t.tar.gz").body == b"bundle bytes"
    if request.node.callspec.params["store"] == "rgw":  # moto checks no signature at all
        forged = url.replace("incoming/ws/b/t.tar.gz", "incoming/ws/b/other.tar.gz")
        assert requests.put(forged, data=b"x", timeout=30).status_code == 403  # the key is signed
