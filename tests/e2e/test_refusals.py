"""Hostile bundles and requests are refused over HTTP, with a stable code, and nothing is written.

Each case is one row: a name, the code the service must answer with, and how
to make the upload from a fresh valid `BundleBuilder`. Every refusal is checked
the same way (`assert_refused`): a 4xx status, the wire format's error envelope
with a short message that echoes no request data, no object added or removed
in storage, no scratch file left behind, and the workspace still at sequence 0.
The size limits run against a second service started with tiny limits.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import random
import tarfile
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import requests

from tests.e2e.conftest import StorageProbe
from tests.support.bundles import BundleBuilder, RawMember, sha1_ref
from tests.support.service import ServiceProcess

Make = Callable[[BundleBuilder], BundleBuilder | bytes]
MAX_MESSAGE = 400


def noise(size: int, seed: int = 0) -> bytes:
    """Incompressible, but the same bytes on every run."""
    return random.Random(seed).randbytes(size)


def inside(b: BundleBuilder, name: str) -> str:
    """`name` under the bundle's leading folder."""
    return f"{b.bundle_id}/{name}"


def extra(b: BundleBuilder, *members: RawMember) -> BundleBuilder:
    b.extra_members.extend(members)
    return b


def with_op(b: BundleBuilder, **fields: Any) -> BundleBuilder:
    """Overwrite fields of the last operation."""
    b.operations[-1].update(fields)
    return b


def with_manifest(b: BundleBuilder, **fields: Any) -> BundleBuilder:
    b.manifest_overrides.update(fields)
    return b


def without_manifest_key(b: BundleBuilder, key: str) -> BundleBuilder:
    manifest = b.manifest()
    del manifest[key]
    b.raw_manifest = json.dumps(manifest).encode()
    return b


def omit(b: BundleBuilder, *names: str) -> BundleBuilder:
    b.omit_members.update(names)
    return b


def raw_operations(b: BundleBuilder, data: bytes) -> BundleBuilder:
    b.raw_operations = data
    return b


def repacked_as_gnu(b: BundleBuilder, name: str) -> bytes:
    """The bundle re-written in GNU tar format plus one member called `name`;
    surrogate escapes in `name` become raw (non-UTF-8) bytes in the header."""
    out = io.BytesIO()
    with (tarfile.open(fileobj=io.BytesIO(b.build()), mode="r:gz") as source,
          tarfile.open(fileobj=out, mode="w:gz", format=tarfile.GNU_FORMAT,
                       encoding="utf-8", errors="surrogateescape") as tar):
        for member in source.getmembers():
            tar.addfile(member, source.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    return out.getvalue()


def declared_size(b: BundleBuilder, size: int) -> bytes:
    """A gzip'd tar whose only member claims `size` bytes but carries one block."""
    info = tarfile.TarInfo(inside(b, "files/created/huge.bin"))
    info.size = size
    return gzip.compress(info.tobuf(tarfile.GNU_FORMAT) + b"x" * 512 + b"\0" * 1024)


def plain_tar(b: BundleBuilder) -> bytes:
    return gzip.decompress(b.created("a.py", b"1").build())


def first_half(b: BundleBuilder) -> bytes:
    raw = b.created("big.bin", noise(64 * 1024)).build()
    return raw[: len(raw) // 2]


def nested(depth: int, open_: str, close: str) -> bytes:
    return (open_ * depth + close * depth).encode()


# Paths that must never be accepted, wherever a workspace path appears.
UNSAFE_PATHS = {
    "dotdot": "../x",
    "dotdot-inside": "a/../../x",
    "dot-component": "a/./b",
    "empty-component": "a//b",
    "trailing-slash": "a/",
    "empty": "",
    "absolute": "/etc/passwd",
    "drive-slash": "C:/x",
    "drive-backslash": "C:\\x",
    "backslash-dotdot": "a\\..\\b",
    "nul": "a\x00b",
    "newline": "a\nb",
    "escape": "a\x1b[2Jb",
    "del": "a\x7fb",
    "lone-surrogate": "a\udcffb",
    "5000-chars": "/".join(["abcd"] * 1000),
    "component-300-chars": "x" * 300,
}
# Where the path is put: an operation without content, one with content
# (so it is also a tar member name), and the source of a move.
PATH_PLACES: dict[str, Callable[[BundleBuilder, str], BundleBuilder]] = {
    "deleted": lambda b, p: b.deleted(p),
    "created": lambda b, p: b.created(p, b"x"),
    "move-source": lambda b, p: b.moved(p, "dest.py"),
}

BUNDLE_CASES: list[tuple[str, str, Make]] = [
    # tar member names
    ("member-dotdot", "UNSAFE_PATH", lambda b: extra(b, RawMember("../evil", b"x"))),
    ("member-absolute", "UNSAFE_PATH", lambda b: extra(b, RawMember("/abs", b"x"))),
    ("member-dotdot-in-files", "UNSAFE_PATH",
     lambda b: extra(b, RawMember(inside(b, "files/created/../../../evil"), b"x"))),
    ("member-drive", "UNSAFE_PATH", lambda b: extra(b, RawMember("C:/evil", b"x"))),
    ("member-backslash", "UNSAFE_PATH",
     lambda b: extra(b, RawMember(inside(b, "files\\created\\evil"), b"x"))),
    ("member-control-char", "UNSAFE_PATH",
     lambda b: extra(b, RawMember(inside(b, "files/created/\x1b]0;pwned\x07"), b"x"))),
    ("member-non-utf8-gnu", "UNSAFE_PATH",
     lambda b: repacked_as_gnu(b, inside(b, "files/created/bad\udcff.py"))),
    ("member-non-utf8-pax", "UNSAFE_PATH",
     lambda b: extra(b, RawMember(inside(b, "files/created/bad\udcff.py"), b"x"))),
    # links and special files
    ("symlink", "UNSAFE_MEMBER", lambda b: extra(
        b, RawMember(inside(b, "files/created/link"), kind=tarfile.SYMTYPE, linkname="/etc/passwd"))),
    ("symlink-as-content", "UNSAFE_MEMBER", lambda b: extra(
        omit(b.created("link.py", b""), "files/created/link.py"),
        RawMember(inside(b, "files/created/link.py"), kind=tarfile.SYMTYPE, linkname="../../x"))),
    ("hard-link", "UNSAFE_MEMBER", lambda b: extra(
        b, RawMember(inside(b, "files/created/hard"), kind=tarfile.LNKTYPE,
                     linkname=inside(b, "manifest.json")))),
    ("char-device", "UNSAFE_MEMBER",
     lambda b: extra(b, RawMember(inside(b, "files/created/tty"), kind=tarfile.CHRTYPE))),
    ("block-device", "UNSAFE_MEMBER",
     lambda b: extra(b, RawMember(inside(b, "files/created/sda"), kind=tarfile.BLKTYPE))),
    ("fifo", "UNSAFE_MEMBER",
     lambda b: extra(b, RawMember(inside(b, "files/created/pipe"), kind=tarfile.FIFOTYPE))),
    # members against operations
    ("duplicate-content-member", "DUPLICATE_MEMBER", lambda b: extra(
        b.created("a.py", b"1"), RawMember(inside(b, "files/created/a.py"), b"2"))),
    ("duplicate-manifest", "DUPLICATE_MEMBER",
     lambda b: extra(b, RawMember(inside(b, "manifest.json"), json.dumps(b.manifest()).encode()))),
    ("duplicate-via-dot-slash", "DUPLICATE_MEMBER",
     lambda b: extra(b, RawMember("./" + inside(b, "manifest.json"), json.dumps(b.manifest()).encode()))),
    ("stray-created-member", "UNEXPECTED_MEMBER",
     lambda b: extra(b, RawMember(inside(b, "files/created/stray.py"), b"x"))),
    ("content-under-wrong-kind", "UNEXPECTED_MEMBER", lambda b: extra(
        b.created("a.py", b"1"), RawMember(inside(b, "files/updated/a.py"), b"1"))),
    ("content-for-a-delete", "UNEXPECTED_MEMBER", lambda b: extra(
        b.deleted("a.py"), RawMember(inside(b, "files/deleted/a.py"), b"1"))),
    ("created-content-missing", "MISSING_MEMBER",
     lambda b: omit(b.created("a.py", b"1"), "files/created/a.py")),
    ("updated-content-missing", "MISSING_MEMBER",
     lambda b: omit(b.updated("a.py", b"1"), "files/updated/a.py")),
    ("manifest-missing", "MISSING_MEMBER", lambda b: omit(b, "manifest.json")),
    ("member-outside-the-leading-folder", "UNEXPECTED_MEMBER",
     lambda b: extra(b, RawMember("evil.sh", b"x"))),
    ("member-inside-the-folder-outside-the-layout", "UNEXPECTED_MEMBER",
     lambda b: extra(b, RawMember(inside(b, "evil.sh"), b"x"))),
    ("manifest-missing-flat", "MISSING_MEMBER",
     lambda b: omit(BundleBuilder(leading_folder=False), "manifest.json")),
    # content checks
    ("wrong-content-hash", "HASH_MISMATCH",
     lambda b: with_op(b.created("a.py", b"1"), content_hash=sha1_ref(b"2"))),
    ("wrong-moved-content-hash", "HASH_MISMATCH",
     lambda b: with_op(b.moved("a.py", "b.py", b"1"), content_hash=sha1_ref(b"2"))),
    ("wrong-size-bytes", "SIZE_MISMATCH", lambda b: with_op(b.updated("a.py", b"12"), size_bytes=1)),
    ("md5-content-hash", "INVALID_BUNDLE",
     lambda b: with_op(b.created("a.py", b"1"), content_hash="md5:c4ca4238a0b923820dcc509a6f75849b")),
    ("short-content-hash", "INVALID_BUNDLE",
     lambda b: with_op(b.created("a.py", b"1"), content_hash="sha1:abc")),
    ("negative-size-bytes", "INVALID_BUNDLE", lambda b: with_op(b.created("a.py", b"1"), size_bytes=-1)),
    # manifest.json
    ("manifest-bad-json", "INVALID_BUNDLE", lambda b: BundleBuilder(raw_manifest=b"{not json")),
    ("manifest-blank", "INVALID_BUNDLE", lambda b: BundleBuilder(raw_manifest=b" ")),
    ("manifest-not-utf8", "INVALID_BUNDLE",
     lambda b: BundleBuilder(raw_manifest=b'{"version": "1.0", "bundle_id": "\xff"}')),
    ("manifest-a-list", "INVALID_BUNDLE", lambda b: BundleBuilder(raw_manifest=b"[]")),
    ("manifest-deeply-nested", "INVALID_BUNDLE",
     lambda b: BundleBuilder(raw_manifest=nested(100_000, '{"a":', "}"))),
    ("manifest-no-bundle-id", "INVALID_BUNDLE", lambda b: without_manifest_key(b, "bundle_id")),
    ("bundle-id-int", "INVALID_BUNDLE", lambda b: with_manifest(b, bundle_id=12345)),
    ("bundle-id-slash", "INVALID_BUNDLE", lambda b: with_manifest(b, bundle_id="a/b")),
    ("bundle-id-dotdot-slash", "INVALID_BUNDLE", lambda b: with_manifest(b, bundle_id="../x")),
    ("bundle-id-dotdot", "INVALID_BUNDLE", lambda b: with_manifest(b, bundle_id="..")),
    ("bundle-id-empty", "INVALID_BUNDLE", lambda b: with_manifest(b, bundle_id="")),
    ("bundle-id-200-chars", "INVALID_BUNDLE", lambda b: with_manifest(b, bundle_id="a" * 200)),
    ("sequence-number-string", "INVALID_BUNDLE", lambda b: with_manifest(b, sequence_number="1")),
    ("sequence-number-zero", "INVALID_BUNDLE", lambda b: with_manifest(b, sequence_number=0)),
    ("total-files-bool", "INVALID_BUNDLE", lambda b: with_manifest(b, total_files=True)),
    ("manifest-operations-list", "INVALID_BUNDLE",
     lambda b: with_manifest(b, operations=["created"])),
    ("manifest-counts-mismatch", "INVALID_BUNDLE",
     lambda b: with_manifest(b.created("a.py", b"1"),
                             operations={"created": 5, "updated": 0, "deleted": 0, "moved": 0})),
    ("manifest-int-5000-digits", "INVALID_BUNDLE",
     lambda b: BundleBuilder(raw_manifest=b'{"version": "1.0", "bundle_id": "x", "total_files": 1'
                             + b"0" * 5000 + b"}")),
    # metadata/operations.json
    ("operations-bad-json", "INVALID_BUNDLE", lambda b: raw_operations(b, b'{"operations": [')),
    ("operations-not-an-object", "INVALID_BUNDLE", lambda b: raw_operations(b, b"[]")),
    ("operations-not-a-list", "INVALID_BUNDLE", lambda b: raw_operations(b, b'{"operations": {}}')),
    ("operations-deeply-nested", "INVALID_BUNDLE",
     lambda b: raw_operations(b, b'{"operations": ' + nested(100_000, "[", "]") + b"}")),
    ("operations-not-utf8", "INVALID_BUNDLE",
     lambda b: raw_operations(b, b'{"operations": [{"operation": "deleted", "path": "\xff"}]}')),
    ("operation-unknown-kind", "INVALID_BUNDLE", lambda b: with_op(b.deleted("a.py"), operation="chmod")),
    ("operation-without-kind", "INVALID_BUNDLE",
     lambda b: raw_operations(b, b'{"operations": [{"path": "a.py"}]}')),
    ("operation-a-string", "INVALID_BUNDLE", lambda b: raw_operations(b, b'{"operations": ["a.py"]}')),
    ("operation-path-int", "INVALID_BUNDLE",
     lambda b: with_op(b.deleted("a.py"), path=7, relative_path=7)),
    ("path-and-relative-path-differ", "INVALID_BUNDLE",
     lambda b: with_op(b.deleted("a.py"), relative_path="../b.py")),
    ("operation-without-path", "UNSAFE_PATH",
     lambda b: with_op(b.deleted("a.py"), path=None, relative_path=None)),
    # not a tar.gz
    ("random-bytes", "INVALID_BUNDLE", lambda b: noise(4096)),
    ("empty-body", "INVALID_BUNDLE", lambda b: b""),
    ("truncated-gzip", "INVALID_BUNDLE", first_half),
    ("gzip-of-text", "INVALID_BUNDLE", lambda b: gzip.compress(b"this is not a tar archive\n" * 200)),
    ("uncompressed-tar", "INVALID_BUNDLE", plain_tar),
    ("tar-xz", "INVALID_BUNDLE", lambda b: lzma.compress(plain_tar(b))),
] + [
    (f"path-{place}-{name}", "UNSAFE_PATH", lambda b, put=put, path=path: put(b, path))
    for place, put in PATH_PLACES.items()
    for name, path in UNSAFE_PATHS.items()
]


# Cases where the service's answer is wrong today: kept strict, so a fix shows up.
KNOWN_WRONG: dict[str, str] = {}  # case id -> why the service still answers it wrongly


def known_wrong(name: str) -> list[pytest.MarkDecorator]:
    if name not in KNOWN_WRONG:
        return []
    return [pytest.mark.xfail(strict=True, raises=AssertionError, reason=KNOWN_WRONG[name])]


def with_ids(cases: list[tuple[str, str, Make]]) -> list[Any]:
    """`(name, code, make)` rows as parameters `(code, make)` with `name` as the id."""
    return [
        pytest.param(code, make, id=name, marks=known_wrong(name)) for name, code, make in cases
    ]


def assert_refused(
    service: ServiceProcess,
    probe: StorageProbe,
    workspace: str,
    send: Callable[[], requests.Response],
    status: int,
    code: str,
) -> None:
    """`send()` is answered with `status`/`code`, and storage is exactly as it was."""
    before = probe.keys()
    response = send()
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["success"] is False
    error = body["error"]
    assert error["code"] == code, error
    message = error["message"]
    assert isinstance(message, str) and message.strip()
    assert len(message) <= MAX_MESSAGE and message.isprintable(), message
    assert workspace not in message
    assert probe.keys() == before
    assert probe.scratch_is_empty()
    answer = service.status(workspace)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["last_sequence"] == 0


def upload(service: ServiceProcess, workspace: str, make: Make) -> Callable[[], requests.Response]:
    made = make(BundleBuilder(workspace_path=workspace))
    raw = made if isinstance(made, bytes) else made.build()
    return partial(service.upload, raw, workspace)


@pytest.mark.parametrize(("code", "make"), with_ids(BUNDLE_CASES))
def test_hostile_bundle_is_refused(
    service: ServiceProcess, probe: StorageProbe, workspace: str, code: str, make: Make
) -> None:
    assert_refused(service, probe, workspace, upload(service, workspace, make), 400, code)


def test_member_claiming_two_gib_is_refused_before_reading_it(
    service: ServiceProcess, probe: StorageProbe, workspace: str
) -> None:
    raw = declared_size(BundleBuilder(), 2 * 1024**3)
    send = partial(service.upload, raw, workspace)
    assert_refused(service, probe, workspace, send, 413, "BUNDLE_LIMIT_EXCEEDED")


REQUEST_CASES: list[tuple[str, dict[str, str | None], bool]] = [
    # (id, form fields besides workspace_path/force defaults, send the bundle part?)
    ("no-bundle-part", {}, False),
    ("no-workspace-path", {"workspace_path": None}, True),
    ("empty-workspace-path", {"workspace_path": ""}, True),
    ("workspace-path-nul", {"workspace_path": "/work/a\x00b"}, True),
    ("workspace-path-5000-chars", {"workspace_path": "/w" * 2500}, True),
    ("sequence-abc", {"sequence_number": "abc"}, True),
    ("sequence-zero", {"sequence_number": "0"}, True),
    ("sequence-negative", {"sequence_number": "-1"}, True),
    ("sequence-fraction", {"sequence_number": "1.5"}, True),
    ("sequence-superscript-two", {"sequence_number": "²"}, True),
    ("force-maybe", {"force": "maybe"}, True),
]


@pytest.mark.parametrize(("fields", "with_bundle"),
                         [pytest.param(f, w, id=i, marks=known_wrong(i)) for i, f, w in REQUEST_CASES])
def test_malformed_request_is_refused(
    service: ServiceProcess, probe: StorageProbe, workspace: str,
    fields: dict[str, str | None], with_bundle: bool,
) -> None:
    form = {k: v for k, v in {"workspace_path": workspace, "force": "False", **fields}.items()
            if v is not None}
    part = ("bundle", ("bundle.tar.gz", BundleBuilder().created("a.py", b"1").build(), "application/gzip"))
    other = ("notes", ("notes.txt", b"no bundle here", "text/plain"))
    files = [part if with_bundle else other]
    send = partial(requests.post, service.url + "/api/v1/delta/upload", data=form, files=files, timeout=60)
    assert_refused(service, probe, workspace, send, 400, "INVALID_REQUEST")


def test_sequence_mismatch_writes_nothing(
    service: ServiceProcess, probe: StorageProbe, workspace: str
) -> None:
    send = partial(service.upload, BundleBuilder().created("a.py", b"1").build(), workspace,
                   sequence_number="7")
    assert_refused(service, probe, workspace, send, 409, "SEQUENCE_MISMATCH")


def test_form_without_multipart_is_refused(
    service: ServiceProcess, probe: StorageProbe, workspace: str
) -> None:
    send = partial(requests.post, service.url + "/api/v1/delta/upload",
                   data={"workspace_path": workspace, "bundle": "x"}, timeout=60)
    assert_refused(service, probe, workspace, send, 400, "INVALID_REQUEST")


UPLOAD_URL_CASES: list[tuple[str, Any]] = [
    # (id, JSON body: an object is sent with this test's workspace_path unless it names one)
    ("body-a-list", ["/work/x"]),
    ("body-a-string", "/work/x"),
    ("workspace-path-false", {"workspace_path": False}),
    ("workspace-path-number", {"workspace_path": 7}),
    ("workspace-path-list", {"workspace_path": ["/work/x"]}),
    ("collection-name-number", {"collection_name": 5}),
    ("source-path-true", {"source_path": True}),
    ("logical-repo-id-number", {"logical_repo_id": 12}),
    ("bundle-id-number", {"bundle_id": 12}),
    ("session-number", {"session": 5}),
    ("sequence-true", {"sequence_number": True}),
    ("sequence-fraction", {"sequence_number": 1.5}),
    ("sequence-zero", {"sequence_number": 0}),
    ("force-number", {"force": 1}),
    ("force-object", {"force": {}}),
]


@pytest.mark.parametrize("body", [pytest.param(b, id=i) for i, b in UPLOAD_URL_CASES])
def test_upload_url_json_of_the_wrong_type_is_refused(
    service: ServiceProcess, probe: StorageProbe, workspace: str, body: Any
) -> None:
    """Text fields take JSON strings only (sequence_number also an integer, force a boolean),
    on either backend: the filesystem one refuses before it says it cannot presign."""
    sent = {"workspace_path": workspace, **body} if isinstance(body, dict) else body
    send = partial(requests.post, service.url + "/api/v1/delta/upload-url", json=sent, timeout=60)
    assert_refused(service, probe, workspace, send, 400, "INVALID_REQUEST")


def test_service_is_still_healthy_and_accepts_a_valid_bundle(
    service: ServiceProcess, workspace: str
) -> None:
    """Runs after the refusals above (pytest keeps file order within a backend)."""
    assert requests.get(service.url + "/health", timeout=10).status_code == 200
    accepted = service.upload(BundleBuilder().created("a.py", b"1").build(), workspace)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["sequence_number"] == 1


# Size limits, against a service of its own with tiny limits ---------------------------------

LIMITS = {"MAX_BUNDLE_SIZE_MB": "1", "MAX_UNCOMPRESSED_MB": "2", "MAX_METADATA_MB": "1",
          "MAX_BUNDLE_MEMBERS": "100"}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, StorageProbe]]:
    root = tmp_path_factory.mktemp("limited-storage")
    log = tmp_path_factory.mktemp("limited-logs") / "service.log"
    instance = ServiceProcess({"WORK_DIR": str(root), **LIMITS}, log).start()
    yield instance, StorageProbe(root=root)
    assert instance.stop() == 0, "the limited service did not stop cleanly on SIGTERM"


def many_members(b: BundleBuilder, count: int) -> BundleBuilder:
    for i in range(count):
        b.created(f"m{i}.py", b"x")
    return b


SIZE_CASES: list[tuple[str, str, Make]] = [
    ("upload-1.5-mb", "BUNDLE_TOO_LARGE", lambda b: b.created("noise.bin", noise(3 * 1024 * 1024 // 2))),
    ("gzip-bomb-3-mb-of-zeros", "BUNDLE_LIMIT_EXCEEDED",
     lambda b: b.created("zeros.bin", b"\0" * (3 * 1024 * 1024))),
    ("operations-json-over-metadata-limit", "BUNDLE_LIMIT_EXCEEDED",
     lambda b: raw_operations(b, b'{"operations": [' + b" " * (1024 * 1024 + 1) + b"]}")),
    ("more-members-than-allowed", "BUNDLE_LIMIT_EXCEEDED", lambda b: many_members(b, 120)),
]


@pytest.mark.parametrize(("code", "make"), with_ids(SIZE_CASES))
def test_size_limit_is_enforced(
    limited: tuple[ServiceProcess, StorageProbe], workspace: str, code: str, make: Make
) -> None:
    service, probe = limited
    assert_refused(service, probe, workspace, upload(service, workspace, make), 413, code)


def test_upload_beyond_the_request_limit_gets_413(
    limited: tuple[ServiceProcess, StorageProbe], workspace: str
) -> None:
    service, probe = limited
    raw = BundleBuilder().created("noise.bin", noise(3 * 1024 * 1024)).build()
    send = partial(service.upload, raw, workspace)
    assert_refused(service, probe, workspace, send, 413, "BUNDLE_TOO_LARGE")


def test_limited_service_is_still_healthy(
    limited: tuple[ServiceProcess, StorageProbe], workspace: str
) -> None:
    service, _ = limited
    assert requests.get(service.url + "/health", timeout=10).status_code == 200
    accepted = service.upload(BundleBuilder().created("a.py", b"1").build(), workspace)
    assert accepted.status_code == 200, accepted.text
