"""/openapi.json describes the live service; schemathesis finds no server error in it.

Schemathesis (its CLI, as CI would run it) loads the document the service
serves, generates requests from it (coverage, fuzzing and stateful phases,
deterministic, bounded examples) and checks every answer: no 5xx, and status
code, content type, headers and body as documented; requests the document
forbids must be refused with a 4xx. It runs against both storage backends, and
on the filesystem once more with sessions on (`CTXCE_AUTH_ENABLED=1`), for the
endpoints whose answers that changes: /auth/* answer for real, and status answers
a caller without credentials; on the filesystem `upload-url` answers its documented
501, the one 5xx allowed there.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate

from core.openapi import openapi_document
from tests.support.moto_server import create_bucket
from tests.support.service import ROOT, ServiceProcess

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance", "negative_data_rejection"]
CONFIG = "\n".join([
    "[checks]", "enabled = false", *(f"{check}.enabled = true" for check in CHECKS),
    # 413 refuses too: the /auth/* bodies are capped at 16 KiB before they are parsed, so an
    # over-long field of escaped non-ASCII text is refused for its size, not its schema; and 414:
    # search's long query parameters, escaped, can pass the request line's limit
    'negative_data_rejection.expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413",'
    ' "414", "415", "422", "428", "429", "5xx"]',
    "[[operations]]", 'include-path = "/api/v1/delta/upload-url"',
    # its text is read as the upload form's is, more leniently than documented (a sequence_number
    # or force with blanks around it, force "on"/"off"): JSON types are checked in test_refusals.py
    "checks.negative_data_rejection.enabled = false",
])
SESSIONS_PATHS = r"^/(auth/|api/v1/delta/status$)"
# the filesystem backend cannot presign: its documented answer is 501 DIRECT_UPLOAD_UNAVAILABLE
ON_FILESYSTEM = '\nchecks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "501"]'


@pytest.fixture(scope="module", params=["filesystem", "s3", "sessions"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp(f"openapi-{request.param}")
    env = {"QDRANT_URL": ":memory:", "INDEXING_ENABLED": "false", "MAX_BUNDLE_SIZE_MB": "1",
           "CLAIM_WAIT_SECS": "2"}
    if request.param in ("filesystem", "sessions"):
        env["WORK_DIR"] = str(root / "storage")
    if request.param == "sessions":  # auth on: /auth/* answer for real, status without credentials too
        env.update({"CTXCE_AUTH_ENABLED": "1", "CTXCE_AUTH_SHARED_TOKEN": "schemathesis-shared-token"})
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = f"openapi-{uuid.uuid4().hex[:8]}"
        create_bucket(endpoint, bucket)
        env.update({"STORAGE_URL": f"s3://{bucket}/svc", "S3_ENDPOINT_URL": endpoint,
                    "SCRATCH_DIR": str(root / "scratch")})
    running = ServiceProcess(env, root / "service.log").start()
    yield running
    assert running.stop() == 0


def routed_paths() -> set[str]:
    """The router's paths, read from functions/main.py (ROUTES and the bundles prefix)."""
    tree = ast.parse((ROOT / "functions" / "main.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == "ROUTES" and isinstance(node.value, ast.Dict):
                found |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
            if node.targets[0].id == "BUNDLES" and isinstance(node.value, ast.Constant):
                found.add(node.value.value + "{bundle_id}")
    return found


def test_the_document_is_valid_openapi_and_lists_every_route() -> None:
    document = openapi_document()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert "/api/v1/delta/bundles/{bundle_id}" in document["paths"]
    assert set(document["paths"]) == routed_paths()


def test_every_error_is_documented_as_the_envelope() -> None:
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")) and method != "head" and (
                        path not in ("/health", "/ready") or status == "405"):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema["required"] == ["success", "error"], (method, path, status)
                    assert schema["properties"]["success"] == {"const": False}


def test_the_service_serves_the_document(service: ServiceProcess) -> None:
    answer = requests.get(service.url + "/openapi.json", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == openapi_document()
    refused = requests.post(service.url + "/openapi.json", timeout=10)
    assert refused.status_code == 405
    assert refused.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_schemathesis_finds_no_server_error(service: ServiceProcess, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG + (ON_FILESYSTEM if _storage(service) == "filesystem" else ""))
    command = [str(SCHEMATHESIS), "--config-file", str(config), "--no-color", "run",
               service.url + "/openapi.json", "--max-examples", "30", "--generation-deterministic",
               "--continue-on-failure", "--request-timeout", "20", "--suppress-health-check", "all",
               "--warnings", "off"]
    paths = openapi_document()["paths"]
    total = sum(len(item) for item in paths.values()) - 1  # not GET /openapi.json
    tested = total
    if service.env.get("CTXCE_AUTH_ENABLED") == "1":
        # with sessions on and no credential, every other endpoint answers only 401 (the
        # other two runs fuzz them): here the endpoints whose answers sessions change, without
        # the stateful phase (its links start at an upload, which needs a credential)
        command += ["--include-path-regex", SESSIONS_PATHS, "--phases", "examples,coverage,fuzzing"]
        tested = sum(len(item) for path, item in paths.items() if re.match(SESSIONS_PATHS, path))
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert f"{tested} selected / {total} total" in run.stdout, run.stdout[:2000]


def test_undeclared_methods_are_refused_with_allow(service: ServiceProcess) -> None:
    """Every path answers a method it does not declare with 405 METHOD_NOT_ALLOWED and
    `Allow` naming at least the methods it declares (RFC 9110 section 15.5.6)."""
    wrong = []
    for path, item in openapi_document()["paths"].items():
        url = service.url + path.replace("{bundle_id}", "b1") + "?workspace_path=/work/x"
        for method in ("DELETE", "PUT"):
            if method.lower() in item:  # declared: the deletion endpoints' DELETE
                continue
            answer = requests.request(method, url, timeout=10)
            allowed = set(answer.headers.get("Allow", "").replace(" ", "").split(","))
            code = answer.json()["error"]["code"] if answer.status_code == 405 else None
            if code != "METHOD_NOT_ALLOWED" or not allowed >= {m.upper() for m in item}:
                wrong.append((method, path, answer.status_code, answer.headers.get("Allow")))
    assert not wrong


def _storage(service: ServiceProcess) -> str:
    return str(requests.get(service.url + "/health", timeout=10).json()["storage_backend"])
