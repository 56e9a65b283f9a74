"""Structured logs, Prometheus metrics and the richer status, from a running service."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from tests.support.bundles import BundleBuilder
from tests.support.service import ServiceProcess

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SECRET_CONTENT = b"TOP-SECRET-FILE-CONTENT-7f3a"


def test_logs_metrics_and_status(tmp_path: Path) -> None:
    log_path = tmp_path / "service.log"
    service = ServiceProcess({"WORK_DIR": str(tmp_path / "storage"), "QDRANT_URL": ":memory:",
                              "UPLOAD_SERVICE_LOG_LEVEL": "debug", "GOOGLE_CLOUD_PROJECT": "demo"},
                             log_path).start()
    try:
        body = BundleBuilder().created("secret.py", b"x = '" + SECRET_CONTENT + b"'\n").build()
        ok = requests.post(service.url + "/api/v1/delta/upload",
                           data={"workspace_path": "/work/obs", "force": "False"},
                           files={"bundle": ("b.tar.gz", body, "application/gzip")},
                           headers={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, timeout=60)
        assert ok.status_code == 200
        timings = ok.json()["timings_ms"]
        assert set(timings) >= {"read", "keep", "claim", "plan", "index", "apply", "commit"}
        assert ok.json()["processing_time_ms"] >= sum(timings.values()) - 1
        bad = service.upload(b"not a bundle", "/work/obs")
        assert bad.status_code == 400
        stray = BundleBuilder(bundle_id="refused-bundle-1").created("a.py", b"a")
        stray.contents["files/created/stray.py"] = b"no operation names me"
        refused = service.upload(stray.build(), "/work/obs")
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "UNEXPECTED_MEMBER"
        status = service.status("/work/obs").json()
        assert status["last_bundle_id"] == ok.json()["bundle_id"]
        assert status["indexed_points"] == 1 and status["pending_operations"] == 0
        assert status["last_upload"]
        exposition = requests.get(service.url + "/metrics", timeout=10).text
    finally:
        assert service.stop() == 0
    assert 'delta_uploads_total{code="",outcome="applied"} 1.0' in exposition
    assert 'delta_uploads_total{code="INVALID_BUNDLE",outcome="refused"} 1.0' in exposition
    assert 'delta_uploads_total{code="UNEXPECTED_MEMBER",outcome="refused"} 1.0' in exposition
    assert 'delta_operations_total{kind="created"} 1.0' in exposition
    assert 'delta_points_total{action="upserted"} 1.0' in exposition
    assert 'delta_step_seconds_count{step="index"} 1.0' in exposition
    assert "delta_bytes_received_total" in exposition and "delta_http_request_seconds" in exposition

    raw = log_path.read_bytes()
    assert SECRET_CONTENT not in raw, "file contents never reach the log"
    lines = [json.loads(line) for line in raw.decode().splitlines() if line.startswith("{")]
    requests_logged = [e for e in lines if "httpRequest" in e]
    upload_line = next(e for e in requests_logged if e["httpRequest"]["requestUrl"] == "/api/v1/delta/upload"
                       and e["httpRequest"]["status"] == 200)
    assert upload_line["severity"] == "INFO"
    assert upload_line["logging.googleapis.com/trace"] == f"projects/demo/traces/{TRACE}"
    assert upload_line["httpRequest"]["latency"].endswith("s")
    assert sum(1 for e in requests_logged if e["httpRequest"]["requestUrl"] == "/api/v1/delta/upload") == 3
    refusals = [e for e in lines if e.get("error_code")]
    assert [(e["error_code"], e["bundle_id"], e["severity"]) for e in refusals] == [
        ("INVALID_BUNDLE", None, "WARNING"), ("UNEXPECTED_MEMBER", "refused-bundle-1", "WARNING")]
    assert refusals[0]["error_message"] == bad.json()["error"]["message"]
    assert "stray.py" in refusals[1]["message"] and "UNEXPECTED_MEMBER" in refusals[1]["message"]
    bundle_line = next(e for e in lines if e.get("bundle_id") == ok.json()["bundle_id"])
    assert bundle_line["workspace"] == ok.json()["workspace_key"] and bundle_line["sequence"] == 1
    assert bundle_line["operations"]["created"] == 1 and "index" in bundle_line["timings_ms"]
    assert bundle_line["logging.googleapis.com/trace"] == f"projects/demo/traces/{TRACE}"


def test_metrics_sum_over_workers_in_multiprocess_mode(tmp_path: Path) -> None:
    """WORKERS=2 with PROMETHEUS_MULTIPROC_DIR: every scrape, whichever worker answers it,
    counts the uploads of both workers."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    service = ServiceProcess({"WORK_DIR": str(tmp_path / "storage"), "INDEXING_ENABLED": "false",
                              "WORKERS": "2", "THREADS": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                             tmp_path / "service.log").start()
    try:
        for i in range(12):
            answer = service.upload(BundleBuilder().created(f"f{i}.py", b"x").build(), f"/work/w{i}")
            assert answer.status_code == 200, answer.text
        scrapes = [requests.get(service.url + "/metrics", timeout=10).text for _ in range(6)]
    finally:
        assert service.stop() == 0
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 2, "the workers keep their own files"
    for exposition in scrapes:
        assert 'delta_uploads_total{code="",outcome="applied"} 12.0' in exposition
        assert 'delta_operations_total{kind="created"} 12.0' in exposition
