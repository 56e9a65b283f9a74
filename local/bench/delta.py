"""Figure 3: a one-file delta must not cost more on a big workspace.

Why: clients send a bundle on every save, so the cost of a small delta must not
grow with the workspace. Two service subprocesses, indexing on
(`QDRANT_URL=:memory:`, default embedder), hold one workspace each: 5,000 files
and 50 files of source-like text (~6 KB a file, indexed by an initial upload that
is not timed). Then one-file deltas are sent to both, alternately, REPS times each:

  * edit    an `updated` file: new content for an existing path (the usual case)
  * add     a `created` file at a new path
  * rename  a `moved` file without content (the client's rename)
  * delete  a `deleted` file

Figure: median time on the 5,000-file workspace / median on the 50-file one,
target <= 1.3x for each kind.
"""

from __future__ import annotations

from local.bench import common
from local.bench.common import Figure, file_path, median, ratio_figure
from tests.support.bundles import BundleBuilder

NAME = "delta"
REPS = common.sized(15, 3)
BIG, SMALL = common.sized(5000, 500), 50
assert 3 * REPS <= SMALL, "each repetition edits, renames and deletes files of its own"
KINDS = {"edit": "edit a file", "add": "add a file", "rename": "rename a file", "delete": "delete a file"}


def deltas(builder: BundleBuilder, rep: int) -> dict[str, bytes]:
    """One bundle per kind, on paths that both workspaces hold (files 0-44); `builder`
    (the workspace's files) follows the edit."""
    def bundle() -> BundleBuilder:
        return BundleBuilder(collection_name=common.COLLECTION)

    path, moved, gone = (file_path("src", n) for n in (rep, REPS + rep, 2 * REPS + rep))
    previous = builder.contents[f"files/created/{path}"]
    edited = previous + f"\n\ndef edited_{rep}() -> int:\n    return {rep}\n".encode()
    builder.contents[f"files/created/{path}"] = edited
    return {
        "edit": bundle().updated(path, edited, previous).build(),
        "add": bundle().created(f"src/new/added_{rep}.py", common.source_text(99_000 + rep)).build(),
        "rename": bundle().moved(moved, f"src/renamed/module_{rep}.py",
                                 content_hash_of=builder.contents[f"files/created/{moved}"]).build(),
        "delete": bundle().deleted(gone, builder.contents[f"files/created/{gone}"]).build(),
    }


def main() -> list[Figure]:
    times: dict[tuple[str, int], list[float]] = {(k, n): [] for k in KINDS for n in (BIG, SMALL)}
    embedded: dict[str, list[float]] = {k: [] for k in KINDS}
    setup: dict[int, float] = {}
    with common.temp_root(NAME) as root, \
            common.service(root, f"ws{BIG}", common.INDEXED) as big, \
            common.service(root, f"ws{SMALL}", common.INDEXED) as small:
        services = {BIG: big, SMALL: small}
        builders = {n: common.source_bundle(n, seed=10 + n) for n in services}
        for n, svc in services.items():
            setup[n], _ = common.timed_upload(svc, builders[n].build(), "/work/ws")
        for rep in range(REPS):
            for n, svc in services.items():  # alternating, so drift hits both alike
                for kind, body in deltas(builders[n], rep).items():
                    seconds, answer = common.timed_upload(svc, body, "/work/ws")
                    assert answer["processed_operations"]["failed"] == 0, answer
                    times[(kind, n)].append(seconds)
                    if n == BIG:
                        embedded[kind].append(answer["indexing"]["chunks_embedded"])
    figures = []
    for kind, what in KINDS.items():
        large, little = median(times[(kind, BIG)]), median(times[(kind, SMALL)])
        figures.append(ratio_figure(
            NAME, f"3  one-file delta, {what}: {BIG:,} / {SMALL}-file ws", large / little, 1.3,
            f"{large * 1000:.0f} ms / {little * 1000:.0f} ms, medians of {REPS}; chunks embedded "
            f"per delta {median(embedded[kind]):.0f}"))
    figures[0].detail += f"; initial uploads {setup[BIG]:.0f} s / {setup[SMALL]:.1f} s (not timed)"
    common.report(figures)
    return figures


if __name__ == "__main__":
    common.run(main)
