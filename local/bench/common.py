"""What the benchmarks of `local/bench/` share: figures, content, services, timing.

Each benchmark script is runnable alone (`python -m local.bench.<name>`) and
prints its figures; `local.bench.run_all` (what `make bench` runs) runs them all
and prints one table. A figure is a `Figure` record; when `BENCH_RESULTS` names
a file, every figure is also appended there as one JSON line, which is how the
runner collects them.

Timing is wall time seen by the client (`time.perf_counter()` around the HTTP
call), always against a baseline measured in the same run; nothing here fails
on timing: a missed target is reported, never raised.

Environment: `BENCH_QUICK=1` runs every script with smaller sizes and fewer
repetitions (a smoke run; its figures are not the issue's); `BENCH_KEEP=1` keeps
the temporary folders (service logs). Temporary folders go under `TMPDIR`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.bundles import BundleBuilder
from tests.support.moto_server import ACCESS_KEY, SECRET_KEY, create_bucket, moto_server
from tests.support.service import ServiceProcess

RESULTS_ENV = "BENCH_RESULTS"
KEEP_ENV = "BENCH_KEEP"  # set to keep the temporary folder (service logs) for inspection
QUICK_ENV = "BENCH_QUICK"  # set for smaller sizes and fewer repetitions
# Set by the runner: leave the folder to the runner, which removes every script's at the
# very end. On ext4 without a journal (this VM's disk) each file deleted in the last
# 1-6 minutes slows every later file creation in its block group (`recently_deleted()`
# in the inode allocator), so one script's clean-up would slow the next one's uploads.
DEFER_ENV = "BENCH_DEFER_CLEANUP"
UPLOAD_TIMEOUT = 600.0
COLLECTION = "bench"
BUCKET = "bench"
MB = 2**20

Answer = dict[str, Any]  # an upload's JSON answer


def sized(full: int, quick: int) -> int:
    """`full`, or `quick` when BENCH_QUICK is set."""
    return quick if os.environ.get(QUICK_ENV) else full


@dataclass
class Figure:
    bench: str  # script name
    name: str  # what is measured
    value: str  # the figure, as printed
    target: str  # e.g. "<= 2x", "—" when the figure has no target
    met: bool | None  # None: informational
    detail: str = ""  # the raw times behind the ratio

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: ""}[self.met]

    def line(self) -> str:
        text = f"  {self.name:<58} {self.value:>14}   target {self.target:<10} {self.verdict}"
        return text + (f"\n      {self.detail}" if self.detail else "")


def report(figures: list[Figure]) -> None:
    """Print the figures and hand them to the runner, if one is listening."""
    for figure in figures:
        print(figure.line())
    sink = os.environ.get(RESULTS_ENV)
    if sink:
        with open(sink, "a", encoding="utf-8") as out:
            for figure in figures:
                out.write(json.dumps(asdict(figure)) + "\n")
    sys.stdout.flush()


def ratio_figure(bench: str, name: str, value: float, limit: float | None, detail: str = "") -> Figure:
    """`value` printed as a ratio; `limit` None makes it informational."""
    if limit is None:
        return Figure(bench, name, f"{value:.2f}x", "—", None, detail)
    return Figure(bench, name, f"{value:.2f}x", f"<= {limit:g}x", value <= limit, detail)


# content ---------------------------------------------------------------------------
_WORDS = (
    "account", "address", "agent", "alias", "answer", "archive", "batch", "bucket", "buffer", "build",
    "bundle", "cache", "channel", "chunk", "claim", "client", "code", "collection", "commit", "config",
    "connection", "context", "copy", "count", "cursor", "delta", "digest", "entry", "event", "file",
    "filter", "folder", "handler", "hash", "head", "header", "index", "item", "journal", "key", "lease",
    "limit", "line", "list", "lock", "manifest", "member", "message", "metric", "model", "node",
    "offset", "owner", "page", "parser", "path", "payload", "plan", "point", "pool", "prefix", "queue",
    "record", "region", "reply", "request", "result", "retry", "route", "scratch", "sequence",
    "session", "shard", "source", "state", "status", "store", "stream", "table", "target", "tenant",
    "timer", "token", "tree", "upload", "user", "value", "vector", "window", "worker"
)
_VERBS = (
    "get", "set", "load", "save", "build", "parse", "check", "apply", "merge", "split", "find", "read",
    "write", "open", "close", "send", "fetch", "update", "delete", "create", "resolve", "render",
    "encode", "decode", "compute", "collect"
)
_TYPES = ("int", "str", "bytes", "float", "bool", "list[str]", "dict[str, int]", "Path", "None")


def _ident(rnd: random.Random, parts: int = 2) -> str:
    return "_".join(rnd.choice(_WORDS) for _ in range(parts))


def _camel(rnd: random.Random) -> str:
    return "".join(rnd.choice(_WORDS).capitalize() for _ in range(2))


def _function(rnd: random.Random, indent: str) -> list[str]:
    name = f"{rnd.choice(_VERBS)}_{_ident(rnd, rnd.randint(1, 2))}"
    args = [_ident(rnd, 1) for _ in range(rnd.randint(0, 3))]
    signature = ", ".join(f"{a}: {rnd.choice(_TYPES)}" for a in dict.fromkeys(args))
    if indent:
        signature = "self" + (", " + signature if signature else "")
    body = indent + "    "
    lines = [f"{indent}def {name}({signature}) -> {rnd.choice(_TYPES)}:",
             f'{body}"""{rnd.choice(_VERBS).capitalize()} the {" ".join(rnd.sample(_WORDS, 3))}."""']
    for _ in range(rnd.randint(3, 12)):
        var = _ident(rnd, 1)
        pick = rnd.random()
        if pick < 0.3:
            lines.append(f"{body}{var} = {rnd.choice(_VERBS)}_{_ident(rnd, 1)}({_ident(rnd, 1)}, "
                         f"{rnd.randint(0, 4096)})")
        elif pick < 0.5:
            lines += [f"{body}if {var} > {rnd.randint(1, 999)}:",
                      f"{body}    raise ValueError(f\"{{{var}}} is not a valid {rnd.choice(_WORDS)}\")"]
        elif pick < 0.7:
            lines += [f"{body}for {var} in self.{_ident(rnd, 1)}s:" if indent else
                      f"{body}for {var} in {_ident(rnd, 1)}s:",
                      f"{body}    {_ident(rnd, 1)}.append({var}.{_ident(rnd, 1)})"]
        elif pick < 0.85:
            lines.append(f"{body}# {' '.join(rnd.choice(_WORDS) for _ in range(rnd.randint(4, 10)))}")
        else:
            lines.append(f'{body}log.debug("{rnd.choice(_VERBS)} %s of %s", {var}, '
                         f'{_ident(rnd, 1)})')
    lines.append(f"{body}return {_ident(rnd, 1)}")
    return lines + [""]


def source_text(seed: int, size: int = 6000) -> bytes:
    """A Python module of about `size` bytes: imports, functions and classes made of
    a small vocabulary, so it compresses like real code (about 4-5x with gzip)."""
    rnd = random.Random(seed)
    lines = [f'"""The {_ident(rnd)} module ({seed})."""', "", "from __future__ import annotations", "",
             "import logging", f"from pathlib import {rnd.choice(['Path', 'PurePath'])}", "",
             "log = logging.getLogger(__name__)", f"LIMIT = {rnd.randint(1, 10**6)}", "", ""]
    length = sum(len(line) + 1 for line in lines)
    while length < size:
        if rnd.random() < 0.3:
            block = [f"class {_camel(rnd)}:", f'    """A {" ".join(rnd.sample(_WORDS, 2))}."""', ""]
            for _ in range(rnd.randint(1, 3)):
                block += _function(rnd, "    ")
            block.append("")
        else:
            block = _function(rnd, "") + [""]
        lines += block
        length += sum(len(line) + 1 for line in block)
    return "\n".join(lines).encode()[:size].rsplit(b"\n", 1)[0] + b"\n"


def file_path(prefix: str, index: int) -> str:
    """Spread over folders as a repository is: ~40 packages, a few sub-packages each."""
    return f"{prefix}/pkg{index % 40:02d}/sub{index % 7}/module_{index:05d}.py"


def source_bundle(count: int, *, seed: int = 0, size: int = 6000, prefix: str = "src") -> BundleBuilder:
    """`count` created files of source-like text (seeded: the same call gives the same
    files, under a new bundle id)."""
    builder = BundleBuilder(collection_name=COLLECTION)
    for i in range(count):
        builder.created(file_path(prefix, i), source_text(seed * 1_000_003 + i, size))
    return builder


def content_mb(builder: BundleBuilder) -> float:
    """Megabytes of file content in a bundle (before packing)."""
    return sum(len(v) for v in builder.contents.values()) / MB


# services --------------------------------------------------------------------------
FILESYSTEM = {"INDEXING_ENABLED": "false"}  # storage only: the apply path alone
# indexing as `make run` has it: the default embedder, Qdrant Edge persisted in a folder of
# the service's own (`service` puts it at <WORK_DIR>/qdrant, as the Makefile does)
INDEXED: dict[str, str] = {}


@contextmanager
def temp_root(name: str) -> Iterator[Path]:
    """A temporary folder under TMPDIR, removed afterwards (kept when BENCH_KEEP is set,
    left to the runner when BENCH_DEFER_CLEANUP is)."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    try:
        yield root
    finally:
        if os.environ.get(KEEP_ENV):
            print(f"  (kept {root})")
        elif not os.environ.get(DEFER_ENV):
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def service(root: Path, name: str, env: dict[str, str], timeout: float = 60.0) -> Iterator[ServiceProcess]:
    """A service subprocess (functions-framework, router target) storing under `root/name`,
    stopped afterwards. It is warmed up by a 5-file upload to a workspace of its own, so
    no timed upload pays for the first request, the embedder's loading or the collection."""
    env = {"WORK_DIR": str(root / name), "QDRANT_URL": str(root / name / "qdrant"),
           "UPLOAD_SERVICE_LOG_LEVEL": "warning", **env}
    process = ServiceProcess(env, root / f"{name}.log")
    process.start(timeout=timeout)
    try:
        upload(process, source_bundle(5, seed=9).build(), "/work/warm-up")
        yield process
    finally:
        process.stop()
        scratch = Path(env.get("SCRATCH_DIR", root))
        if not scratch.is_relative_to(root):  # made elsewhere for this service alone (s3_env)
            shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def s3_service(root: Path, name: str, env: dict[str, str]) -> Iterator[tuple[ServiceProcess, str]]:
    """`service` on the S3 backend (`s3://bench/<name>`) against a moto server on loopback;
    yields the service and the server's endpoint."""
    with moto_server(root / "moto.log") as endpoint:
        create_bucket(endpoint, BUCKET)
        with service(root, name, {**s3_env(root, name, endpoint, ACCESS_KEY, SECRET_KEY), **env}) as svc:
            yield svc, endpoint


def s3_env(root: Path, name: str, endpoint: str, access_key: str, secret_key: str) -> dict[str, str]:
    """Settings for a service storing under `s3://bench/<name>` at `endpoint`. Its scratch
    is in memory where /dev/shm exists (as on Cloud Run, whose writable disk is memory):
    an S3 backend deletes every staged file, and on this VM's disk deleted files slow the
    next run's file creation (see DEFER_ENV), which would be charged to the next backend."""
    shm = Path("/dev/shm")
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=shm)) if shm.is_dir() else root / "scratch"
    return {"STORAGE_URL": f"s3://{BUCKET}/{name}", "S3_ENDPOINT_URL": endpoint,
            "SCRATCH_DIR": str(scratch),
            "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}


def upload(svc: ServiceProcess, body: bytes, workspace: str) -> Answer:
    """POST one bundle; the JSON answer (raises on anything but 200)."""
    answer = requests.post(svc.url + "/api/v1/delta/upload", timeout=UPLOAD_TIMEOUT,
                           data={"workspace_path": workspace, "force": "False"},
                           files={"bundle": ("bundle.tar.gz", body, "application/gzip")})
    if answer.status_code != 200:
        raise RuntimeError(f"upload answered {answer.status_code}: {answer.text[:500]}")
    return dict(answer.json())


def timed_upload(svc: ServiceProcess, body: bytes, workspace: str) -> tuple[float, Answer]:
    """`upload`, and the seconds it took as the client sees them."""
    started = time.perf_counter()
    result = upload(svc, body, workspace)
    return time.perf_counter() - started, result


PIPELINE_STEPS = ("read", "prepare", "keep", "claim", "plan", "index", "apply", "commit")


def step_summary(answers: list[Answer], least_ms: float = 1.0) -> str:
    """Median milliseconds of each pipeline step (the answers' `timings_ms`), in pipeline
    order, leaving out steps under `least_ms`: where the time of an upload goes."""
    measured = answers[0]["timings_ms"]
    names = [s for s in PIPELINE_STEPS if s in measured] + [s for s in measured if s not in PIPELINE_STEPS]
    medians = {step: median([a["timings_ms"][step] for a in answers]) for step in names}
    return " ".join(f"{step} {ms:.0f}" for step, ms in medians.items() if ms >= least_ms) + " ms"


# timing and processes ----------------------------------------------------------------
def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def worker_pids(pid: int) -> list[int]:
    """Descendants of `pid` (gunicorn's workers under the functions-framework process)."""
    found: list[int] = []
    for child in _children(pid):
        found.append(child)
        found += worker_pids(child)
    return found


def worker_pid(svc: ServiceProcess) -> int:
    """The gunicorn worker that serves `svc`'s requests: a child of its master (a helper
    process the worker started, `core.indexing.embedding_process`, is a grandchild)."""
    assert svc.process is not None
    return _children(svc.process.pid)[-1]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def proc_status(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmHWM, VmRSS, …), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (it must still be running)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakSampler:
    """The highest value of a /proc/<pid>/status field, sampled every 50 ms from now on."""

    def __init__(self, pid: int, field: str) -> None:
        self.pid, self.field, self.peak = pid, field, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, proc_status(self.pid, self.field))

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return max(self.peak, proc_status(self.pid, self.field))


class CpuClock:
    """CPU seconds that processes use from now on: `used()` reads them (while they run)."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.start = [cpu_seconds(pid) for pid in pids]

    def used(self) -> list[float]:
        return [cpu_seconds(pid) - start for pid, start in zip(self.pids, self.start, strict=True)]


def drop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a process group this script started (`sig`, then SIGKILL after 10 s).
    SIGINT is gunicorn's quick shutdown; SIGTERM its graceful one (~2.5 s here)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass


def run(main: Callable[[], object]) -> None:
    """Run a benchmark's `main`, turning SIGTERM into an exception so that its
    `finally` blocks still stop the services it started and remove its folder."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    main()
