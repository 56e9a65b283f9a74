"""Pipeline benchmarks (issue 7): every figure a ratio to a baseline measured in this run.

    1  5,000-file ~30 MB bundle, filesystem, indexing off  vs  GNU tar xzf     target <= 2x
       5,000 files vs 500 files                                           target <= 11x
    2  the same bundle on S3 (moto server)  vs  the filesystem time        target <= 3x
    3  one-file delta on a 5,000-file workspace vs a 50-file one, indexing target <= 1.3x
    4  re-upload of an applied 1,000-file bundle under a new id vs first   target <= 0.2x, 0 embeds
    5  peak RSS of the worker applying a ~100 MB bundle                    target < 300 MB
    6  cold start: process start to first /health answer                  target < 1.5 s
"""

from __future__ import annotations

import base64
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.support.bundles import BundleBuilder
from tests.support.moto_server import create_bucket, moto_server
from tests.support.service import FRAMEWORK, ROOT, ServiceProcess, free_port

Row = tuple[str, str, str, bool]


def text_files(count: int, size: int, seed: int, prefix: str = "src") -> BundleBuilder:
    """Source-like text that gzip cannot shrink much (so bundle size ~ content size)."""
    rnd = random.Random(seed)
    builder = BundleBuilder()
    for i in range(count):
        body = base64.b64encode(rnd.randbytes(size * 3 // 4)).decode()
        lines = "\n".join(body[j : j + 76] for j in range(0, len(body), 76))
        source = f'"""module {i}"""\nDATA = """{lines}"""\n'
        builder.created(f"{prefix}/pkg{i % 50}/mod{i}.py", source.encode())
    return builder


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def upload(service: ServiceProcess, body: bytes, workspace: str) -> dict[str, object]:
    answer = requests.post(service.url + "/api/v1/delta/upload", timeout=1800,
                           data={"workspace_path": workspace, "force": "False"},
                           files={"bundle": ("bundle.tar.gz", body, "application/gzip")})
    assert answer.status_code == 200, answer.text[:300]
    return dict(answer.json())


def tar_time(body: bytes, root: Path) -> float:
    archive = root / "bundle.tar.gz"
    archive.write_bytes(body)
    best = []
    for attempt in range(3):
        target = root / f"untar-{attempt}"
        target.mkdir()
        best.append(timed(lambda t=target: subprocess.run(["tar", "xzf", str(archive), "-C", str(t)],
                                                          check=True)))
        subprocess.run(["rm", "-rf", str(target)], check=True)
    return statistics.median(best)


def apply_figures(root: Path) -> list[Row]:
    big = text_files(5000, 6000, seed=1).build()
    small = text_files(500, 6000, seed=2).build()
    env = {"WORK_DIR": str(root / "fs"), "INDEXING_ENABLED": "false"}
    service = ServiceProcess(env, root / "fs.log").start()
    try:
        upload(service, text_files(5, 100, seed=9).build(), "/work/warm-up")
        t_small = timed(lambda: upload(service, small, "/work/small"))
        t_big = timed(lambda: upload(service, big, "/work/big"))
    finally:
        service.stop()
    t_tar = tar_time(big, root)
    with moto_server(root / "moto.log") as endpoint:
        create_bucket(endpoint, "bench")
        s3 = ServiceProcess({"STORAGE_URL": "s3://bench/svc", "S3_ENDPOINT_URL": endpoint,
                             "SCRATCH_DIR": str(root), "INDEXING_ENABLED": "false",
                             "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
                            root / "s3.log").start()
        try:
            upload(s3, text_files(5, 100, seed=9).build(), "/work/warm-up")
            t_s3 = timed(lambda: upload(s3, big, "/work/big"))
        finally:
            s3.stop()
    mb = len(big) / 2**20
    return [
        (f"1  apply 5,000 files ({mb:.0f} MB) / tar xzf", f"{t_big / t_tar:.2f}x "
         f"({t_big:.2f} s / {t_tar:.2f} s)", "<= 2x", t_big / t_tar <= 2),
        ("1  5,000 files / 500 files", f"{t_big / t_small:.1f}x ({t_big:.2f} s / {t_small:.2f} s)",
         "<= 11x", t_big / t_small <= 11),
        ("2  S3 (moto) / filesystem, 5,000 files", f"{t_s3 / t_big:.2f}x ({t_s3:.2f} s)", "<= 3x",
         t_s3 / t_big <= 3),
    ]


def delta_figures(root: Path) -> list[Row]:
    service = ServiceProcess({"WORK_DIR": str(root / "idx"), "QDRANT_URL": ":memory:"},
                             root / "idx.log").start()
    try:
        upload(service, text_files(50, 2000, seed=3, prefix="small").build(), "/work/ws50")
        upload(service, text_files(5000, 2000, seed=4, prefix="large").build(), "/work/ws5000")

        def one_file(workspace: str, prefix: str, i: int) -> float:
            data = f"def changed_{i}():\n    return {i}\n".encode()
            body = BundleBuilder().created(f"{prefix}/edit{i}.py", data).build()
            return timed(lambda: upload(service, body, workspace))

        small = statistics.median(one_file("/work/ws50", "small", i) for i in range(9))
        large = statistics.median(one_file("/work/ws5000", "large", i) for i in range(9))
        first_body = text_files(1000, 3000, seed=5, prefix="re").build()
        t_first = timed(lambda: upload(service, first_body, "/work/reupload"))
        again = text_files(1000, 3000, seed=5, prefix="re").build()  # same files, new bundle id
        result: dict[str, object] = {}
        t_again = timed(lambda: result.update(upload(service, again, "/work/reupload")))
        embedded = dict(result["indexing"])["chunks_embedded"]  # type: ignore[call-overload]
    finally:
        service.stop()
    return [
        ("3  one-file delta, 5,000-file / 50-file workspace", f"{large / small:.2f}x "
         f"({large * 1000:.0f} ms / {small * 1000:.0f} ms)", "<= 1.3x", large / small <= 1.3),
        ("4  re-upload of 1,000 files / first upload", f"{t_again / t_first:.2f}x, "
         f"{embedded} chunks embedded", "<= 0.2x, 0", t_again / t_first <= 0.2 and embedded == 0),
    ]


def memory_figure(root: Path) -> list[Row]:
    body = text_files(800, 160_000, seed=6).build()
    service = ServiceProcess({"WORK_DIR": str(root / "mem"), "INDEXING_ENABLED": "false",
                              "MAX_BUNDLE_SIZE_MB": "200"}, root / "mem.log").start()
    try:
        assert service.process is not None
        upload(service, text_files(5, 100, seed=9).build(), "/work/warm-up")
        upload(service, body, "/work/mem")
        pids = [service.process.pid] + _children(service.process.pid)
        peak = max(_peak_rss_mb(pid) for pid in pids)
    finally:
        service.stop()
    mb = len(body) / 2**20
    return [(f"5  peak RSS applying a {mb:.0f} MB bundle", f"{peak:.0f} MB", "< 300 MB", peak < 300)]


def cold_start_figure(root: Path) -> list[Row]:
    starts = []
    for attempt in range(3):
        port = free_port()
        started = time.perf_counter()
        process = subprocess.Popen([str(FRAMEWORK), "--source", str(ROOT / "functions/main.py"),
                                    "--target", "service", "--host", "127.0.0.1", "--port", str(port)],
                                   env={"PATH": "/usr/bin:/bin", "WORK_DIR": str(root / f"cold{attempt}"),
                                        "QDRANT_URL": ":memory:"},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except requests.ConnectionError:
                    time.sleep(0.01)
            starts.append(time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait(timeout=15)
    flask = statistics.median(timed(lambda: subprocess.run([str(FRAMEWORK.with_name("python")), "-c",
                                                            "import flask"], check=True))
                              for _ in range(3))
    cold = statistics.median(starts)
    return [("6  cold start to first /health", f"{cold:.2f} s ({cold / flask:.1f}x `import flask`)",
             "< 1.5 s", cold < 1.5)]


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found] + [c for p in found for c in _children(int(p))]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        for figures in (apply_figures, delta_figures, memory_figure, cold_start_figure):
            rows += figures(root)
    for name, figure, target, ok in rows:
        print(f"  {name:<52} {figure:<40} target {target:<12} {'ok' if ok else 'MISSED'}")
    return rows


if __name__ == "__main__":
    main()
