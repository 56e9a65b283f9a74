"""`make bench` (`python -m local.bench`): every benchmark of `local/bench/`, then
one table of all figures with their targets.

Each benchmark runs as its own process (`python -m local.bench.<name>`, the
same command that runs it alone), with a time limit; its figures come back
through the file named by `BENCH_RESULTS`. All temporary folders are made under
one folder that is removed at the very end, not after each benchmark (see
`common.DEFER_ENV`: on this machine's disk, files deleted in the last minutes
slow every file creation). `TMPDIR=/dev/shm make bench` runs everything on
tmpfs; `BENCH_QUICK=1 make bench` with smaller sizes.

Exit status: 1 if a benchmark failed to run; a missed target is reported, not
an error.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from local.bench.common import DEFER_ENV, QUICK_ENV, RESULTS_ENV, Figure

# (module, time limit in seconds), in the order they run: those that create many files
# first, those that delete many (the S3 backend removes its staged files) last.
BENCHMARKS = [
    ("cold_start", 180),
    ("apply_fs", 600),
    ("reupload", 600),
    ("delta", 900),
    ("memory", 600),
    ("apply_s3", 900),
    ("indexing", 600),
    ("search", 600),
    ("reindex", 600),
    ("renames", 900),
    ("retention", 300),
]
# the order of the final table: the figures 1 to 6, then indexing and search
TABLE_ORDER = ["apply_fs", "apply_s3", "delta", "reupload", "memory", "cold_start", "indexing", "search",
               "renames", "reindex", "retention"]
ROOT = Path(__file__).resolve().parents[2]


def run_one(module: str, limit: int, env: dict[str, str]) -> int | str:
    """Run one benchmark, its output going to ours; its exit code, or "timeout"."""
    command = [sys.executable, "-u", "-m", f"local.bench.{module}"]
    sys.stdout.flush()
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        return process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        # SIGTERM: the benchmark stops the services it started (common.run), then exits
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return "timeout"


def main() -> int:
    started = time.monotonic()
    parent = Path(tempfile.mkdtemp(prefix="bench-run-"))
    results = parent / "results.jsonl"
    env = {**os.environ, RESULTS_ENV: str(results), DEFER_ENV: "1", "TMPDIR": str(parent),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    figures: list[Figure] = []
    runs: list[tuple[str, int | str, float]] = []
    try:
        for module, limit in BENCHMARKS:
            print(f"\n== {module}", flush=True)
            begun = time.monotonic()
            code = run_one(module, limit, env)
            runs.append((module, code, time.monotonic() - begun))
    finally:
        if results.exists():
            figures = [Figure(**json.loads(line)) for line in results.read_text().splitlines()]
        shutil.rmtree(parent, ignore_errors=True)
    total = time.monotonic() - started
    figures.sort(key=lambda f: TABLE_ORDER.index(f.bench) if f.bench in TABLE_ORDER else len(TABLE_ORDER))
    quick = f" ({QUICK_ENV} set: smaller sizes)" if os.environ.get(QUICK_ENV) else ""
    print(f"\n== all figures (ratios to baselines measured in this run){quick}")
    print(f"  {'figure':<58} {'value':>14}   {'target':<17} verdict")
    for figure in figures:
        print(f"  {figure.name:<58} {figure.value:>14}   {figure.target:<17} {figure.verdict}")
    failed = [(m, c) for m, c, _ in runs if c != 0]
    timings = ", ".join(f"{m} {t:.0f} s" for m, _, t in runs)
    print(f"\n  {len([f for f in figures if f.met is False])} target(s) missed; "
          f"total {total:.0f} s ({timings})")
    for module, code in failed:
        print(f"  benchmark {module} did not finish: {code}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
