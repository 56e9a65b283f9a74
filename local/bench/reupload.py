"""Figure 4: re-sending files the server already holds costs little.

Why: a client that lost its local record re-sends files the server has; those
must be recognised by content, neither rewritten nor re-embedded. A service
subprocess, indexing on (`QDRANT_URL=:memory:`, default embedder, loaded by the
warm-up), gets a 1,000-file bundle of source-like text in a fresh workspace, then
the same files again under a new bundle id. Target: the re-upload takes <= 20%
of the first upload, and embeds nothing (`indexing.chunks_embedded == 0`). REPS
workspaces; figures are medians.
"""

from __future__ import annotations

from local.bench import common
from local.bench.common import Figure, median, ratio_figure

NAME = "reupload"
FILES = common.sized(1000, 200)
REPS = common.sized(3, 1)


def main() -> list[Figure]:
    firsts: list[float] = []
    agains: list[float] = []
    embedded: list[int] = []
    first_chunks = 0
    with common.temp_root(NAME) as root, common.service(root, "svc", common.INDEXED) as svc:
        for rep in range(REPS):
            first = common.source_bundle(FILES, seed=20 + rep).build()
            again = common.source_bundle(FILES, seed=20 + rep).build()  # same files, a new bundle id
            assert first != again
            seconds, answer = common.timed_upload(svc, first, f"/work/re-{rep}")
            firsts.append(seconds)
            first_chunks = answer["indexing"]["chunks_embedded"]
            seconds, answer = common.timed_upload(svc, again, f"/work/re-{rep}")
            agains.append(seconds)
            embedded.append(answer["indexing"]["chunks_embedded"])
            assert answer["processed_operations"]["skipped"] == FILES, answer["processed_operations"]
    figures = [
        ratio_figure(NAME, f"4  re-upload of {FILES:,} applied files / first upload",
                     median(agains) / median(firsts), 0.2,
                     f"{median(agains) * 1000:.0f} ms / {median(firsts) * 1000:.0f} ms (first upload "
                     f"embedded {first_chunks} chunks); medians of {REPS}"),
        Figure(NAME, "4  chunks embedded by the re-upload", str(max(embedded)), "0",
               max(embedded) == 0, f"per repetition: {embedded}"),
    ]
    common.report(figures)
    return figures


if __name__ == "__main__":
    common.run(main)
