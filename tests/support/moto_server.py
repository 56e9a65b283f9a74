"""A real moto S3 server in a subprocess, for tests that need an S3 endpoint.

`moto_server()` starts `python -m moto.server` on a free loopback port, waits
until it answers HTTP, yields its endpoint URL and stops it afterwards.
`create_bucket()` makes a bucket on it. Credentials are dummies and are passed
to boto3 explicitly; nothing here writes to `os.environ`.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config

from tests.support.service import free_port

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
PYTHON = Path(sys.executable).parent / "python"


@contextmanager
def moto_server(log_path: Path | None = None, startup_timeout: float = 20.0) -> Iterator[str]:
    """Run a moto server for the duration of the block; yields `http://127.0.0.1:<port>`.

    The server's output goes to `log_path` (a temporary file if None): moto logs
    every request, and a file, unlike a pipe, never fills up and stalls it.
    """
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [str(PYTHON), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with log_path.open("w+b") if log_path else tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_answering(process, port, startup_timeout, log)
            yield endpoint
        finally:
            _stop(process)


def _wait_until_answering(
    process: subprocess.Popen[bytes], port: int, timeout: float, log: IO[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"moto server exited with {process.returncode} before answering:\n{_tail(log)}"
            )
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
        finally:
            connection.close()
    raise RuntimeError(f"moto server did not answer on port {port} within {timeout}s:\n{_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(log: IO[bytes], limit: int = 4000) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-limit:].decode("utf-8", "replace")


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client for the moto server, with the dummy credentials."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )


def create_bucket(endpoint: str, bucket: str) -> None:
    """Create a fresh bucket on the moto server at `endpoint`."""
    s3_client(endpoint).create_bucket(Bucket=bucket)
