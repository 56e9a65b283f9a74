"""A storage folder that runs out of space: `503 STORAGE_FULL`, the claim stays pending,
and once space is freed the retry converges on the state of a clean run.

Each test mounts a small tmpfs of its own as the service's storage folder (`mount`
needs root or CAP_SYS_ADMIN; without them the tests skip and say so), so the full
disk is a real one: the kernel refuses the writes with ENOSPC, nothing is faked.

Mid-apply: after a base bundle of 300 files, a ballast takes all but about half
of what the next bundle's tree writes need. That bundle renames the folder `src/`
to `lib/` (plus a few creates, updates and deletes), so it is read, kept, claimed
and planned, and fails part-way through copying the renamed files. Copies,
because on one filesystem the content a bundle ships is staged in `.scratch` and
renamed into the tree, which takes no new space: what does is a rename's copy
(sources are removed only after every copy landed). It runs twice: out of bytes
(a ballast file), and out of inodes (a ballast of empty files on a tmpfs with
`nr_inodes`), where not even the release of the claim can be written, so the
original error must still be the answer and the retry must wait out the lease.
Then: 503 with Retry-After, `head.json` still holds the claim, some but not all
copies are in the tree, and no temporary is left anywhere. With the ballast gone,
the same upload again finishes the bundle; tree, manifest, journal and every
stored key then equal those of the same two bundles applied by another service
to a folder on disk.

Before spooling: with the disk already full, the upload cannot even be received,
and nothing at all is stored.

Indexing is off (`INDEXING_ENABLED=false`, as in the other e2e tests not about the
index): Qdrant runs in memory, not on the full disk, so indexing would test nothing
here, and each service starts in about a second.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.bundles import BundleBuilder
from tests.support.service import ServiceProcess

WORKSPACE = "/work/full-disk"
BASE_ID = "5f0a0000-0000-4000-8000-000000000001"
BIG_ID = "5f0a0000-0000-4000-8000-000000000002"
RENAMED = 300  # files of 12-20 KiB under src/, each renamed to lib/ by the second bundle
TMPFS_BYTES = 32 * 1024 * 1024
TMPFS_INODES = 2000
TEMP_MARK = ".~tmp~"
TIMING = {"timings_ms", "processing_time_ms", "committed_at"}


def module(index: int) -> tuple[str, bytes]:
    """A source file of real size (12-20 KiB), the same bytes on every run."""
    rng = random.Random(index)
    size = 12 * 1024 + (index * 997) % (8 * 1024)
    lines: list[str] = []
    total = 0
    while total < size:
        line = (f"def f{index}_{len(lines)}(x):  # {rng.getrandbits(96):024x}\n"
                f"    return x * {rng.randint(0, 10**6)}\n")
        lines.append(line)
        total += len(line)
    return f"src/pkg{index % 10}/mod{index:03d}.py", "".join(lines).encode()[:size]


def bundles() -> tuple[bytes, bytes]:
    modules = [module(i) for i in range(RENAMED)]
    base = BundleBuilder(bundle_id=BASE_ID, workspace_path=WORKSPACE, collection_name="full-disk")
    for path, data in modules:
        base.created(path, data)
    for i in range(10):
        base.created(f"docs/note{i}.md", f"# note {i}\n".encode() * 200)
    big = BundleBuilder(bundle_id=BIG_ID, workspace_path=WORKSPACE, collection_name="full-disk")
    for path, data in modules:
        big.moved(path, "lib/" + path.removeprefix("src/"), content_hash_of=data)
    for i in range(5):
        big.updated(f"docs/note{i}.md", f"# note {i}, revised\n".encode() * 200,
                    previous=f"# note {i}\n".encode() * 200)
        big.deleted(f"docs/note{i + 5}.md")
    for i in range(20):
        big.created(f"new/file{i:02d}.txt", f"new {i}\n".encode() * 1000)
    return base.build(), big.build()


@dataclass
class Disk:
    """A tmpfs of its own, and a ballast that uses up one of its resources: bytes
    (`space`) or inodes (`inodes`)."""

    point: Path
    resource: str

    @property
    def ballast(self) -> Path:
        return self.point / "ballast"

    def free(self) -> int:
        stat = os.statvfs(self.point)
        return stat.f_bavail * stat.f_frsize if self.resource == "space" else stat.f_favail

    def fill(self, leave: int) -> None:
        """Take all of the resource but `leave` bytes or inodes; real pages (fallocate
        allocates them on tmpfs, a sparse file would not) or real empty files."""
        self.ballast.mkdir()
        if self.resource == "space":
            leave = pages(leave)
            fd = os.open(self.ballast / "0", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.posix_fallocate(fd, 0, self.free() - leave)
            finally:
                os.close(fd)
        else:
            for number in range(self.free() - leave):
                (self.ballast / str(number)).touch(exist_ok=False)
        assert self.free() == leave

    def unfill(self) -> None:
        shutil.rmtree(self.ballast)


@pytest.fixture
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Disk]:
    """A tmpfs at a folder of this test's own (`request.param`: which resource runs
    out, `space` unless told); unmounted afterwards."""
    resource = getattr(request, "param", "space")
    point = tmp_path / "tmpfs"
    point.mkdir()
    options = f"size={TMPFS_BYTES},mode=0755" + (f",nr_inodes={TMPFS_INODES}" if resource == "inodes" else "")
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                                 capture_output=True, text=True, check=False)
    except FileNotFoundError:
        pytest.skip("no `mount` command to make a small filesystem with")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield Disk(point, resource)
    finally:
        for _ in range(20):
            if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.25)  # a stopped service's last file handles
        else:
            subprocess.run(["umount", "-l", str(point)], check=True)


def pages(size: int) -> int:
    """What a file of `size` bytes takes on tmpfs: whole pages."""
    return -(-size // 4096) * 4096


def room_before_writes(disk: Disk, big: bytes) -> tuple[int, int]:
    """(what the bundle needs before its tree writes, what its copies need), in the
    disk's resource; the first over-counted: the form's and the pipeline's spooled
    copies, the unpacked tar and its members, the kept raw bundle, the plan, locks."""
    if disk.resource == "space":
        copies = sum(pages(len(module(i)[1])) for i in range(RENAMED))
        return 3 * len(big) + 2 * len(gzip.decompress(big)) + 256 * 1024, copies
    with tarfile.open(fileobj=io.BytesIO(big)) as archive:
        members = len(archive.getmembers())
    return members + 32, RENAMED + 11  # a new file per copy, and lib/ with its ten folders


def service_env(storage: Path) -> dict[str, str]:
    # a short lease: if the failed request could not even release its claim (the head is
    # written on the same full disk), the retry takes it over within CLAIM_WAIT_SECS
    return {"WORK_DIR": str(storage), "INDEXING_ENABLED": "false", "LEASE_SECS": "2",
            "CLAIM_WAIT_SECS": "20"}


def workspace_dir(storage: Path) -> Path:
    return next((storage / "workspaces").iterdir())


def head(storage: Path) -> dict[str, Any]:
    return dict(json.loads((workspace_dir(storage) / "head.json").read_text()))


def stored_keys(storage: Path) -> set[str]:
    return {p.relative_to(storage).as_posix() for p in storage.rglob("*")
            if p.is_file() and not p.relative_to(storage).as_posix().startswith((".locks/", ".scratch/"))}


def leftovers(storage: Path) -> list[str]:
    """Temporaries anywhere below the storage folder, and anything left in scratch."""
    temps = [p.name for p in storage.rglob(f"*{TEMP_MARK}*")]
    return temps + [p.name for p in (storage / ".scratch").rglob("*")]


def tree(storage: Path) -> dict[str, bytes]:
    root = workspace_dir(storage) / "tree"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def journal(storage: Path) -> list[dict[str, Any]]:
    entries = sorted((workspace_dir(storage) / "journal").iterdir())
    return [{k: v for k, v in json.loads(p.read_text()).items() if k not in TIMING} for p in entries]


def manifest(service: ServiceProcess) -> list[dict[str, Any]]:
    """Every page of the manifest endpoint."""
    pages_seen, cursor = [], ""
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        answer = service.manifest(WORKSPACE, **params)
        assert answer.status_code == 200, answer.text
        pages_seen.append(answer.json())
        cursor = answer.json()["next_cursor"]
        if not cursor:
            return pages_seen


def assert_storage_full(answer: Any) -> None:
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert answer.json()["success"] is False and error["code"] == "STORAGE_FULL"
    assert int(answer.headers["Retry-After"]) >= 1
    assert error["retry_after"] == int(answer.headers["Retry-After"]) * 1000


def clean_run(root: Path) -> dict[str, Any]:
    """Both bundles applied by another service to a folder on disk, without faults."""
    root.mkdir()
    storage = root / "storage"
    service = ServiceProcess(service_env(storage), root / "clean.log").start()
    try:
        answers = [service.upload(body, WORKSPACE) for body in bundles()]
        assert [a.status_code for a in answers] == [200, 200], answers[-1].text
        pages_seen = manifest(service)
    finally:
        assert service.stop() == 0
    return {"answer": {k: v for k, v in answers[1].json().items() if k not in TIMING},
            "tree": tree(storage), "manifest": pages_seen, "journal": journal(storage),
            "keys": stored_keys(storage)}


@pytest.mark.parametrize("disk", ["space", "inodes"], indirect=True)
def test_a_disk_full_mid_apply_answers_503_keeps_the_claim_and_the_retry_converges(
    disk: Disk, tmp_path: Path
) -> None:
    storage = disk.point / "storage"
    base, big = bundles()
    renamed = [module(i)[0] for i in range(RENAMED)]
    log = tmp_path / "full.log"
    service = ServiceProcess(service_env(storage), log).start()
    try:
        assert service.upload(base, WORKSPACE).status_code == 200
        before_writes, copies = room_before_writes(disk, big)
        disk.fill(leave=before_writes + copies // 2)

        failed = service.upload(big, WORKSPACE)
        assert_storage_full(failed)
        claim = head(storage)
        assert claim["last_sequence"] == 1 and claim["status"] == "applying"
        assert claim["pending"]["bundle_id"] == BIG_ID and claim["pending"]["sequence"] == 2
        status = service.status(WORKSPACE).json()
        assert status["last_sequence"] == 1 and status["pending_bundle"] is not None
        written = tree(storage)
        copied = [p for p in written if p.startswith("lib/")]
        limit = f"{TMPFS_BYTES} bytes" if disk.resource == "space" else f"{TMPFS_INODES} inodes"
        print(f"tmpfs of {limit}: {before_writes + copies // 2} left for a bundle whose copies take "
              f"{copies}; {len(copied)} of {RENAMED} copies landed before ENOSPC")  # with -s, or on failure
        assert 0 < len(copied) < RENAMED, "the bundle did not fail part-way through its writes"
        assert all(p in written for p in renamed), "a move source went before every copy landed"
        assert leftovers(storage) == []
        assert len(list((workspace_dir(storage) / "journal").iterdir())) == 1
        if disk.resource == "inodes":  # no inode for the head's temporary: the lease stays
            assert f"could not release the lease of bundle {BIG_ID}" in log.read_text()
            assert claim["pending"]["lease_expires_at"] > 0

        disk.unfill()
        retry = service.upload(big, WORKSPACE)
        assert retry.status_code == 200, retry.text
        assert retry.json()["sequence_number"] == 2 and retry.json()["duplicate"] is False
        pages_seen = manifest(service)
    finally:
        assert service.stop() == 0
    clean = clean_run(tmp_path / "clean")
    assert {k: v for k, v in retry.json().items() if k not in TIMING} == clean["answer"]
    assert tree(storage) == clean["tree"]
    assert pages_seen == clean["manifest"]
    assert journal(storage) == clean["journal"]
    assert stored_keys(storage) == clean["keys"]  # raw bundles, results, head; no plan left
    assert head(storage)["pending"] is None and head(storage)["last_sequence"] == 2
    assert leftovers(storage) == []


def test_an_upload_that_cannot_even_be_spooled_answers_503_and_stores_nothing(
    disk: Disk, tmp_path: Path
) -> None:
    storage = disk.point / "storage"
    base, big = bundles()
    service = ServiceProcess(service_env(storage), tmp_path / "full.log").start()
    try:
        assert service.upload(base, WORKSPACE).status_code == 200
        before = {key: (storage / key).read_bytes() for key in stored_keys(storage)}
        disk.fill(leave=0)

        assert_storage_full(service.upload(big, WORKSPACE))
        assert {key: (storage / key).read_bytes() for key in stored_keys(storage)} == before
        assert head(storage)["pending"] is None and head(storage)["last_sequence"] == 1
        assert leftovers(storage) == []

        disk.unfill()
        retry = service.upload(big, WORKSPACE)
        assert retry.status_code == 200, retry.text
        assert retry.json()["sequence_number"] == 2
    finally:
        assert service.stop() == 0
