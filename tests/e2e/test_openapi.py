"""/openapi.json describes the live service; schemathesis finds no server error in it.

Schemathesis generates requests from the served document (examples, coverage,
fuzzing and stateful phases, deterministic) against a service on the S3 backend
(a moto server), and checks that no answer is a 5xx and that every status code,
content type and body matches what the document says.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.moto_server import create_bucket
from tests.support.service import ServiceProcess

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.fixture(scope="module")
def service(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    bucket = f"openapi-{uuid.uuid4().hex[:8]}"
    create_bucket(moto_endpoint, bucket)
    root = tmp_path_factory.mktemp("openapi")
    running = ServiceProcess({"STORAGE_URL": f"s3://{bucket}/svc", "S3_ENDPOINT_URL": moto_endpoint,
                              "SCRATCH_DIR": str(root), "INDEXING_ENABLED": "false",
                              "MAX_BUNDLE_SIZE_MB": "1", "CLAIM_WAIT_SECS": "2"},
                             root / "service.log").start()
    yield running
    assert running.stop() == 0


def test_the_document_lists_every_route(service: ServiceProcess) -> None:
    document = requests.get(service.url + "/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/health", "/ready", "/api/v1/delta/status", "/api/v1/delta/manifest", "/api/v1/delta/upload",
        "/api/v1/delta/upload-url", "/api/v1/delta/bundles/{bundle_id}", "/api/v1/delta/events",
        "/openapi.json",
    }


def test_schemathesis_finds_no_server_error(service: ServiceProcess) -> None:
    run = subprocess.run(
        [str(SCHEMATHESIS), "run", service.url + "/openapi.json", "--checks", CHECKS,
         "--max-examples", "25", "--generation-deterministic", "--request-timeout", "30",
         "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
