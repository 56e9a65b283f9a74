"""Figure 2: the 5,000-file bundle of figure 1 on the S3 backend.

Why: production stores workspaces in S3 / Ceph RGW, where every file is a
request; applying there should stay within a small factor of the filesystem.
The service runs with `STORAGE_URL=s3://bench/s3` against a moto server on
loopback, indexing off, and is compared with a filesystem-backed service
applying the same bundle in this same run: target <= 3x. CPU time of the
service worker and of the moto server is printed too, to tell which side the
time goes to (on a 2-core machine they compete).

Informational: the S3 upload against the floor any S3 apply has on this moto
server, boto3 PUTs of the same files with as many threads as the service uses
(`S3_MAX_CONNECTIONS` / 2). Then the same two figures on a real Ceph RGW
(production's S3, started on loopback by `tests/support/ceph_rgw.py`; reported
as skipped where Ceph cannot be installed).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

from local.bench import common
from local.bench.common import Figure, median, ratio_figure
from tests.support.ceph_rgw import RgwUnavailable, rgw_cluster
from tests.support.moto_server import ACCESS_KEY, SECRET_KEY

NAME = "apply_s3"
FILES = common.sized(5000, 500)
FS_REPS = common.sized(3, 1)
S3_REPS = 1  # ~1 minute each against moto
THREADS = 16  # the service's parallel_io with the default S3_MAX_CONNECTIONS=32


def raw_puts(endpoint: str, contents: dict[str, bytes], access_key: str = ACCESS_KEY,
             secret_key: str = SECRET_KEY) -> float:
    """Seconds to PUT every file once, straight from boto3 (no service)."""
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=2 * THREADS,
                      request_checksum_calculation="when_required"))
    with ThreadPoolExecutor(THREADS) as pool:
        return common.timed(lambda: list(pool.map(
            lambda item: client.put_object(Bucket=common.BUCKET, Key=f"raw/{item[0]}", Body=item[1]),
            contents.items())))


def moto_pid() -> int:
    """The moto server this process started (a child of ours)."""
    for pid in common.worker_pids(os.getpid()):
        if b"moto.server" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise RuntimeError("no moto server among this process's children")


def main() -> list[Figure]:
    with common.temp_root(NAME) as root:
        builder = common.source_bundle(FILES, seed=1)
        bundle = builder.build()
        with common.service(root, "fs", common.FILESYSTEM) as fs:
            fs_times = [common.timed_upload(fs, bundle, f"/work/fs-{rep}")[0] for rep in range(FS_REPS)]
        with common.s3_service(root, "s3", common.FILESYSTEM) as (s3, endpoint):
            clock = common.CpuClock(common.worker_pid(s3), moto_pid())
            runs = [common.timed_upload(s3, bundle, f"/work/s3-{rep}") for rep in range(S3_REPS)]
            cpu_svc, cpu_moto = (seconds / S3_REPS for seconds in clock.used())
            t_raw = raw_puts(endpoint, builder.contents)
        t_s3, t_fs = median([t for t, _ in runs]), median(fs_times)
        steps = common.step_summary([answer for _, answer in runs], least_ms=50)
        figures = [
            ratio_figure(NAME, f"2  S3 (moto) / filesystem, {FILES:,}-file bundle", t_s3 / t_fs, 3,
                         f"S3 {t_s3:.1f} s (steps: {steps}; CPU: service {cpu_svc:.1f} s, moto "
                         f"{cpu_moto:.1f} s), filesystem {t_fs:.2f} s (median of {FS_REPS})"),
            ratio_figure(NAME, f"   S3 upload / boto3 PUT of the same {FILES:,} files", t_s3 / t_raw, None,
                         f"{t_s3:.1f} s / {t_raw:.1f} s ({THREADS} threads): moto's own floor"),
            *rgw_figures(root, bundle, builder.contents, t_fs),
        ]
    common.report(figures)
    return figures


def ceph_pids(ceph_dir: Path) -> list[int]:
    """The cluster's daemons (RGW, OSD, monitor), from their pid files."""
    return [int(pid_file.read_text()) for pid_file in sorted((ceph_dir / "run").glob("*.pid"))]


def rgw_figures(root: Path, bundle: bytes, contents: dict[str, bytes], t_fs: float) -> list[Figure]:
    """The same bundle on a fresh Ceph RGW, against the filesystem and the raw PUT floor."""
    name = f"2  S3 (Ceph RGW) / filesystem, {FILES:,}-file bundle"
    try:
        with rgw_cluster() as rgw:
            rgw.create_bucket(common.BUCKET)
            env = {**common.s3_env(root, "rgw", rgw.url, rgw.access_key, rgw.secret_key), **common.FILESYSTEM}
            with common.service(root, "rgw", env) as svc:
                clock = common.CpuClock(common.worker_pid(svc), *ceph_pids(rgw.ceph_dir))
                seconds, answer = common.timed_upload(svc, bundle, "/work/rgw-0")
                cpu_svc, *cpu_ceph = clock.used()
            t_raw = raw_puts(rgw.url, contents, rgw.access_key, rgw.secret_key)
    except RgwUnavailable as exc:
        return [Figure(NAME, name, "skipped", "<= 3x", None, str(exc)[:300])]
    steps = common.step_summary([answer], least_ms=50)
    cpu = cpu_svc + sum(cpu_ceph)
    return [
        ratio_figure(NAME, name, seconds / t_fs, 3,
                     f"RGW {seconds:.1f} s (steps: {steps}; CPU: service {cpu_svc:.1f} s, Ceph daemons "
                     f"{sum(cpu_ceph):.1f} s: {cpu / os.cpu_count():.1f} s on {os.cpu_count()} cores), "
                     f"filesystem {t_fs:.2f} s"),
        ratio_figure(NAME, f"   RGW upload / boto3 PUT of the same {FILES:,} files", seconds / t_raw, None,
                     f"{seconds:.1f} s / {t_raw:.1f} s ({THREADS} threads): RGW's own floor here"),
    ]


if __name__ == "__main__":
    common.run(main)
