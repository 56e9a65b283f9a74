"""Figure 5: peak memory of the service applying a ~100 MB bundle.

Why: bundles may be as large as `MAX_BUNDLE_SIZE_MB`, and instances run with
little memory; the service must stream a bundle, not hold it. The content is
text that gzip cannot shrink much (base64 of random bytes, 76 characters a
line), so the compressed bundle is ~100 MB for ~132 MB of files: every byte has
to pass through the service. `MAX_BUNDLE_SIZE_MB=150` admits it. After the
upload, the peak RSS (`VmHWM` of /proc/<pid>/status) of the gunicorn worker that
served it is read; target < 300 MB. Two runs:

  * storage path: indexing off, 1,500 files of ~64 KB plus 4 of 8 MB;
  * indexing on (`QDRANT_URL=:memory:`, default embedder loaded by the warm-up),
    3 files of ~44 MB (under the client's 50 MB cap, over `INDEX_MAX_FILE_KB`, so
    stored and counted as skipped): large files through storage and the indexer.

Indexing this much text is not measured: with the embedded in-memory Qdrant the
index itself (every chunk's text is in its payload) would live in the service
process, so its RSS would measure the index size, not the upload path.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path

from local.bench import common
from local.bench.common import MB, Figure
from tests.support.bundles import BundleBuilder

NAME = "memory"
LIMIT_MB = 300
SMALL_FILES = common.sized(1500, 150)
LARGE_MB, HUGE_MB = common.sized(8, 1), common.sized(44, 4)


def noise_text(rnd: random.Random, size: int) -> bytes:
    """`size` bytes of base64 lines: valid text, ~0.76 of it left after gzip."""
    encoded = base64.b64encode(rnd.randbytes(size * 57 // 77 + 57))
    lines = b"\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    return lines[:size]


def noise_bundle(seed: int, files: dict[str, int]) -> BundleBuilder:
    """Files of noise text, by path and size."""
    rnd = random.Random(seed)
    builder = BundleBuilder(collection_name=common.COLLECTION)
    for path, size in files.items():
        builder.created(path, noise_text(rnd, size))
    return builder


def measure(root: Path, name: str, env: dict[str, str], builder: BundleBuilder, label: str) -> Figure:
    content = common.content_mb(builder)
    body = builder.build()
    del builder
    with common.service(root, name, {"MAX_BUNDLE_SIZE_MB": "150", **env}) as svc:
        assert svc.process is not None
        master, worker = svc.process.pid, common.worker_pid(svc)
        before = common.proc_status(worker, "VmRSS")
        seconds, answer = common.timed_upload(svc, body, "/work/memory")
        peak = common.proc_status(worker, "VmHWM")
        master_peak = common.proc_status(master, "VmHWM")
    skipped = (answer.get("indexing") or {}).get("files_skipped", "-")
    return Figure(
        NAME, f"5  peak RSS, {len(body) / MB:.0f} MB bundle, {label}",
        f"{peak / MB:.0f} MB", f"< {LIMIT_MB} MB", peak < LIMIT_MB * MB,
        f"{content:.0f} MB of files; worker RSS {before / MB:.0f} MB before the upload, peak "
        f"{peak / MB:.0f} MB after it ({seconds:.1f} s; files skipped by indexing: {skipped}); "
        f"functions-framework (gunicorn master) peak {master_peak / MB:.0f} MB")


def main() -> list[Figure]:
    storage = {f"data/part{i % 30:02d}/blob_{i:04d}.txt": 64 * 1024 for i in range(SMALL_FILES)}
    storage.update({f"data/large/blob_{i}.txt": LARGE_MB * MB for i in range(4)})
    huge = {f"data/huge_{i}.txt": HUGE_MB * MB for i in range(3)}
    with common.temp_root(NAME) as root:
        figures = [
            measure(root, "storage", common.FILESYSTEM, noise_bundle(5, storage), "indexing off"),
            measure(root, "indexing", common.INDEXED, noise_bundle(6, huge),
                    f"indexing on, 3 x {HUGE_MB} MB files"),
        ]
    common.report(figures)
    return figures


if __name__ == "__main__":
    common.run(main)
