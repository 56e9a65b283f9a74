"""Figure: with retention on, a workspace's storage grows with its tree, not its history.

Why: every delta leaves a raw bundle, a journal entry and a result record; without
retention those add up for ever. A workspace of FILES real files (the first Python
files, by path, of the installed packages) gets DELTAS one-file deltas (each rewrites one
file with an edit appended, as an editor's save does) through the real pipeline
(`core.pipeline.Pipeline`, filesystem storage, indexing off: indexing writes nothing to
storage), with a retention sweep (`core.retention.Retention`, what the `gc_sweep` target
runs) every CADENCE deltas, as an hourly schedule would meet a client sending CADENCE
deltas an hour. Retention as configured here: RETENTION_KEEP_SEQUENCES=100 (the default)
and the age window off (the bench's deltas are all seconds old; the default 7 days
would keep every one of them). The baseline is a second store that gets the same deltas
and no sweep.

Figures: bytes of every key of the store (the workspace's keys, its alias and tenant
record: object bytes, as S3 bills them) / bytes of the tree's files, after the last
sweep (target <= 1.5x); the most it reached just before a sweep; the baseline's ratio;
and what a sweep costs. The stores live in /dev/shm where it exists: the figures are bytes,
and this disk's fsyncs (three per commit) would otherwise stretch the 2,002 uploads from
about 35 s to over two minutes.
"""

from __future__ import annotations

import io
import os
import shutil
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.config import Settings
from core.keys import tree_prefix, workspace_key
from core.models import UploadRequest
from core.pipeline import Pipeline
from core.retention import Retention
from core.storage.filesystem import FilesystemStore
from local.bench import common
from local.bench.common import Figure, median, ratio_figure
from tests.support.bundles import BundleBuilder

NAME = "retention"
FILES = common.sized(300, 100)
DELTAS = common.sized(1000, 200)
CADENCE = 100
KEEP = 100
WORKSPACE = "/work/retained"
WS = workspace_key("", WORKSPACE, None)


def corpus(limit: int) -> dict[str, bytes]:
    site = Path(sysconfig.get_paths()["purelib"])
    return {"lib/" + path.relative_to(site).as_posix(): path.read_bytes()
            for path in sorted(site.rglob("*.py"))[:limit]}


@contextmanager
def memory_root() -> Iterator[Path]:
    """A folder in /dev/shm (else under TMPDIR), removed afterwards unless BENCH_KEEP is set."""
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix=f"bench-{NAME}-", dir=shm if shm.is_dir() else None))
    try:
        yield root
    finally:
        if os.environ.get(common.KEEP_ENV):
            print(f"  (kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


def stored_bytes(store: FilesystemStore, prefix: str = "") -> tuple[int, int]:
    """(bytes, objects) of every key under `prefix`: what an object store would hold."""
    sizes = [os.stat(store.root / key).st_size for key in store.list(prefix)]
    return sum(sizes), len(sizes)


def main() -> list[Figure]:
    files = corpus(FILES)
    paths = sorted(files)
    with memory_root() as root:
        stores = {name: FilesystemStore(root / name) for name in ("retained", "baseline")}
        config = Settings(work_dir=str(root), qdrant_url=":memory:", indexing_enabled=False,
                          retention_keep_sequences=KEEP, retention_max_age_hours=0)
        pipelines = {name: Pipeline(config, store, None) for name, store in stores.items()}
        first = BundleBuilder(collection_name=common.COLLECTION)
        for path, data in files.items():
            first.created(path, data)
        current = dict(files)
        upload_s: list[float] = []
        sweep_ms: list[float] = []
        peaks: list[float] = []
        for delta in range(DELTAS + 1):
            if delta == 0:
                body = first.build()
            else:
                path = paths[(delta * 7919) % len(paths)]
                current[path] = current[path] + f"# edit {delta}\n".encode()
                body = BundleBuilder(collection_name=common.COLLECTION).updated(path, current[path]).build()
            for name, pipeline in pipelines.items():
                started = time.perf_counter()
                pipeline.upload(UploadRequest(workspace_path=WORKSPACE), io.BytesIO(body))
                if name == "retained":
                    upload_s.append(time.perf_counter() - started)
            if delta and delta % CADENCE == 0:
                tree, _ = stored_bytes(stores["retained"], tree_prefix(WS))
                peaks.append(stored_bytes(stores["retained"])[0] / tree)
                started = time.perf_counter()
                Retention(config, stores["retained"]).sweep()
                sweep_ms.append((time.perf_counter() - started) * 1000)
        results = {}
        for name, store in stores.items():
            held = {key.removeprefix(tree_prefix(WS)): (store.root / key).read_bytes()
                    for key in store.list(tree_prefix(WS))}
            assert held == current, f"{name}: the tree is not what the deltas made it"
            tree, tree_objects = stored_bytes(store, tree_prefix(WS))
            total, objects = stored_bytes(store)
            results[name] = (total / tree, total, tree, objects, tree_objects)
    kept, base = results["retained"], results["baseline"]
    figures = [
        ratio_figure(NAME, f"   storage / tree after {DELTAS:,} one-file deltas, retention on",
                     kept[0], 1.5,
                     f"{kept[1] / common.MB:.2f} MB in {kept[3]:,} objects / tree "
                     f"{kept[2] / common.MB:.2f} MB in {kept[4]:,} files ({FILES} real files); "
                     f"RETENTION_KEEP_SEQUENCES={KEEP}, a sweep every {CADENCE} deltas"),
        ratio_figure(NAME, "   storage / tree at most, just before a sweep", max(peaks), None,
                     f"{KEEP} + {CADENCE} sequences kept then"),
        ratio_figure(NAME, "   storage / tree without retention (baseline)", base[0], None,
                     f"{base[1] / common.MB:.2f} MB in {base[3]:,} objects"),
        Figure(NAME, f"   one sweep ({CADENCE} sequences to remove)", f"{median(sweep_ms):.0f} ms", "—", None,
               f"median of {len(sweep_ms)}; a one-file delta takes {median(upload_s) * 1000:.1f} ms "
               f"(median, in process)"),
    ]
    common.report(figures)
    return figures


if __name__ == "__main__":
    common.run(main)
