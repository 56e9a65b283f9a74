"""Figure 1: applying a 5,000-file bundle over HTTP on the filesystem backend.

Why: applying a bundle should cost about what unpacking it does, and grow
linearly with its file count. A 5,000-file bundle of source-like text (~6 KB a
file, ~28 MB of files, ~7 MB packed) is uploaded to a service subprocess
(`INDEXING_ENABLED=false`, storage in a temporary folder) into a fresh workspace
each time, and compared with

  * GNU `tar xzf` of the very same file into a fresh folder on the same disk:
    target <= 2x;
  * the same upload with 500 files: 5,000 files must cost <= 11x 500 files.

Uploads and extractions are interleaved, REPS times each; figures are medians.
Informational: `tar`'s own 5,000 / 500 ratio in the same run, and ours divided by
it; and the upload against Python's own unpacking of the same file
(`tarfile.extractall(filter="data")`, which neither hashes, validates nor keeps
anything): how far from `tar` pure Python is on this machine. File creation on
this disk is superlinear for `tar` too (see `common.DEFER_ENV`); a quotient near
1 means the service scales as the disk does.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from local.bench import common
from local.bench.common import Figure, median, ratio_figure

NAME = "apply_fs"
REPS = common.sized(3, 1)
BIG, SMALL = common.sized(5000, 1000), common.sized(500, 100)
# tar on a healthy disk here: ~10x for 10x the files, ~40-60 us a file (tmpfs ~40 us)
SLOW_DISK_SCALING = 13.0
SLOW_DISK_PER_FILE = 150e-6


def tar_extract_time(archive: Path, dest: Path) -> float:
    """Wall time of GNU `tar xzf archive -C dest` into a fresh folder. The folder is
    left in place (removed with the temporary root): deleting thousands of files here
    would slow the file creations measured next (see `common.DEFER_ENV`)."""
    dest.mkdir(parents=True)
    return common.timed(lambda: subprocess.run(["tar", "xzf", str(archive), "-C", str(dest)], check=True))


def tarfile_extract_time(archive: Path, dest: Path) -> float:
    """Wall time of Python's `tarfile` unpacking `archive` into a fresh folder."""
    dest.mkdir(parents=True)

    def extract() -> None:
        with tarfile.open(archive, "r:gz") as bundle:
            bundle.extractall(dest, filter="data")

    return common.timed(extract)


def main() -> list[Figure]:
    with common.temp_root(NAME) as root:
        builders = {BIG: common.source_bundle(BIG, seed=1), SMALL: common.source_bundle(SMALL, seed=2)}
        mb = common.content_mb(builders[BIG])
        bodies = {n: builder.build() for n, builder in builders.items()}
        del builders
        archives = {n: root / f"bundle-{n}.tar.gz" for n in bodies}
        for n, body in bodies.items():
            archives[n].write_bytes(body)
        svc_times: dict[int, list[float]] = {BIG: [], SMALL: []}
        tar_times: dict[int, list[float]] = {BIG: [], SMALL: []}
        py_times: list[float] = []
        answers: dict[int, list[common.Answer]] = {BIG: [], SMALL: []}
        with common.service(root, "fs", common.FILESYSTEM) as svc:
            clock = common.CpuClock(common.worker_pid(svc))
            for rep in range(REPS):
                for n in (SMALL, BIG):
                    seconds, answer = common.timed_upload(svc, bodies[n], f"/work/fs-{n}-{rep}")
                    svc_times[n].append(seconds)
                    answers[n].append(answer)
                    tar_times[n].append(tar_extract_time(archives[n], root / f"tar-{n}-{rep}"))
                py_times.append(tarfile_extract_time(archives[BIG], root / f"py-{rep}"))
            cpu = clock.used()[0] / REPS
    svc_big, svc_small = median(svc_times[BIG]), median(svc_times[SMALL])
    tar_big, tar_small = median(tar_times[BIG]), median(tar_times[SMALL])
    ours, tars, py_big = svc_big / svc_small, tar_big / tar_small, median(py_times)
    figures = [
        ratio_figure(NAME, f"1  apply {BIG:,} files (~{mb:.0f} MB, {len(bodies[BIG]) / common.MB:.1f} MB "
                     "packed) / tar xzf", svc_big / tar_big, 2,
                     f"service {svc_big:.2f} s (steps: {common.step_summary(answers[BIG])}; worker CPU "
                     f"{cpu:.2f} s per rep of both sizes), tar {tar_big:.2f} s; medians of {REPS}"),
        ratio_figure(NAME, f"1  apply {BIG:,} files / {SMALL} files", ours, 11,
                     f"{svc_big:.2f} s / {svc_small:.2f} s ({SMALL}-file steps: "
                     f"{common.step_summary(answers[SMALL])})"),
        ratio_figure(NAME, f"   tar xzf {BIG:,} files / {SMALL} files (same disk)", tars, None,
                     f"{tar_big:.2f} s / {tar_small:.2f} s, {tar_big / BIG * 1e6:.0f} us a file"),
        ratio_figure(NAME, f"   our {BIG:,}/{SMALL} scaling / tar's", ours / tars, None,
                     f"{ours:.2f}x / {tars:.2f}x: 1 is scaling as the disk does"),
        ratio_figure(NAME, f"   apply {BIG:,} files / Python's tarfile.extractall", svc_big / py_big, None,
                     f"{svc_big:.2f} s / {py_big:.2f} s; tarfile.extractall / tar xzf "
                     f"{py_big / tar_big:.2f}x"),
    ]
    if tars > SLOW_DISK_SCALING or tar_big / BIG > SLOW_DISK_PER_FILE:
        figures[2].detail += (
            "\n      WARNING: the disk is in a slow state (files deleted in the last minutes make "
            "every file creation\n      scan them on ext4 without a journal): tar is inflated, so the "
            "first ratio understates\n      the service's cost. Run again later, or with TMPDIR=/dev/shm.")
    common.report(figures)
    return figures


if __name__ == "__main__":
    common.run(main)
