"""Figure: a folder rename, as the existing client sends it, costs a fraction of re-sending it.

Why: the existing Context-Engine client reports a renamed folder as three
operations per file (created at the new path, moved, deleted at the old one).
Applied in order, that is a move of every file: the tree copies, the index
re-points the stored vectors, nothing is embedded. The baseline, measured in the
same run on a second workspace of the same service, is the same rename sent as
a rename with edits is sent (created + deleted: every file re-chunked and
embedded), which is what indexing a rename costs when it is not known to be one.

The corpus is real code nobody here wrote: the first FILES Python files (by
path) of the installed packages, under `lib/`, renamed to `vendor/lib/`. One
service subprocess, filesystem storage, a persistent embedded Qdrant folder and
the default embedder, as `make run` has them.

Figures: the chunks the rename embedded (target 0), and rename time / baseline
time (informational: with qdrant-client's local mode both are dominated by its
per-point SQLite commit, which re-pointing pays as much as a fresh upsert).
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from local.bench import common
from local.bench.common import Figure, ratio_figure
from tests.support.bundles import BundleBuilder

NAME = "renames"
FILES = common.sized(2000, 200)


def corpus(limit: int) -> dict[str, bytes]:
    site = Path(sysconfig.get_paths()["purelib"])
    return {"lib/" + path.relative_to(site).as_posix(): path.read_bytes()
            for path in sorted(site.rglob("*.py"))[:limit]}


def bundles(files: dict[str, bytes]) -> tuple[bytes, bytes, bytes]:
    """The first sync, the client's folder rename, and the same rename as create + delete."""
    first = BundleBuilder(collection_name=common.COLLECTION)
    renamed = BundleBuilder(collection_name=common.COLLECTION)
    resent = BundleBuilder(collection_name=common.COLLECTION)
    for path, data in files.items():
        first.created(path, data)
        renamed.created("vendor/" + path, data)
        resent.created("vendor/" + path, data)
    for path, data in files.items():
        renamed.moved(path, "vendor/" + path, data)
    for path in files:
        renamed.deleted(path)
        resent.deleted(path)
    return first.build(), renamed.build(), resent.build()


def main() -> list[Figure]:
    files = corpus(FILES)
    first, renamed, resent = bundles(files)
    with common.temp_root(NAME) as root, \
            common.service(root, "svc", {"QDRANT_URL": str(root / "qdrant")}, timeout=120) as svc:
        setup = [common.timed_upload(svc, first, ws)[0] for ws in ("/work/renamed", "/work/resent")]
        base_s, base = common.timed_upload(svc, resent, "/work/resent")
        rename_s, rename = common.timed_upload(svc, renamed, "/work/renamed")
    assert rename["processed_operations"]["moved"] == len(files), rename["processed_operations"]
    chunks, repointed = rename["indexing"]["chunks_embedded"], rename["indexing"]["points_repointed"]
    figures = [
        Figure(NAME, "   chunks embedded by the folder rename", f"{chunks}", "0", chunks == 0),
        ratio_figure(NAME, f"   folder rename, {len(files):,} real files / sent as create+delete",
                     rename_s / base_s, None,
                     f"{rename_s:.1f} s / {base_s:.1f} s; repointed {repointed:,}"
                     f" points, baseline embedded {base['indexing']['chunks_embedded']:,} chunks; "
                     f"first syncs {setup[0]:.0f} s and {setup[1]:.0f} s (not timed); "
                     f"rename steps: {common.step_summary([rename])}"),
    ]
    common.report(figures)
    return figures


if __name__ == "__main__":
    common.run(main)
