"""Prometheus metrics of the service (served at /metrics by the router target).

    delta_uploads_total{outcome,code}        uploads by outcome (applied, duplicate, refused, failed)
    delta_step_seconds{step}                 pipeline step durations
    delta_operations_total{kind}             applied operations (created, updated, …, skipped, failed)
    delta_bytes_received_total               compressed bundle bytes received
    delta_points_total{action}               Qdrant points upserted, deleted, re-pointed
    delta_chunks_embedded_total              chunks sent to the embedder
    delta_embed_seconds                      embedder time per bundle
    delta_http_requests_total{route,status}  requests answered
    delta_http_request_seconds{route}        request latency
    delta_search_seconds{kind}               searches answered (code, commits) and their latency
    delta_gc_objects_removed_total{kind}     objects the retention sweep removed (raw_bundle, result, …)
    delta_gc_bytes_removed_total{kind}       their bytes

Each process keeps its own counters; Prometheus sums over instances. With more
than one worker per instance (functions-framework's WORKERS), set
PROMETHEUS_MULTIPROC_DIR to an empty folder before start: prometheus-client then
keeps the counters in files there, and /metrics answers the sum over the workers.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from core.models import IndexingStats, ProcessedOperations

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

UPLOADS = Counter("delta_uploads_total", "Uploads by outcome and error code", ["outcome", "code"])
STEP_SECONDS = Histogram("delta_step_seconds", "Pipeline step duration", ["step"], buckets=STEP_BUCKETS)
OPERATIONS = Counter("delta_operations_total", "Applied operations by kind", ["kind"])
BYTES_RECEIVED = Counter("delta_bytes_received_total", "Compressed bundle bytes received")
POINTS = Counter("delta_points_total", "Qdrant points written, by action", ["action"])
CHUNKS_EMBEDDED = Counter("delta_chunks_embedded_total", "Chunks sent to the embedder")
EMBED_SECONDS = Histogram("delta_embed_seconds", "Embedder time per bundle", buckets=STEP_BUCKETS)
HTTP_REQUESTS = Counter("delta_http_requests_total", "HTTP requests answered", ["route", "status"])
SEARCH_SECONDS = Histogram("delta_search_seconds", "Search latency, by kind (code, commits)", ["kind"],
                           buckets=STEP_BUCKETS)
GC_OBJECTS = Counter("delta_gc_objects_removed_total", "Objects the retention sweep removed, by kind",
                     ["kind"])
GC_BYTES = Counter("delta_gc_bytes_removed_total", "Bytes the retention sweep removed, by kind", ["kind"])
HTTP_SECONDS = Histogram("delta_http_request_seconds", "HTTP request latency", ["route"],
                         buckets=STEP_BUCKETS)
REINDEX_FILES = Counter("delta_reindex_files_total", "Tree files indexed by reindex jobs")
REINDEX_POINTS = Counter("delta_reindex_points_total", "Points written by reindex jobs")
REINDEX_BATCHES_REDONE = Counter("delta_reindex_batches_redone_total",
                                 "Reindex batches done again because an upload ran meanwhile")
REINDEX_JOBS = Counter("delta_reindex_jobs_total", "Reindex jobs finished, by outcome", ["outcome"])


def record_bundle(processed: ProcessedOperations, indexing: IndexingStats | None,
                  timings_ms: dict[str, float], duplicate: bool) -> None:
    UPLOADS.labels("duplicate" if duplicate else "applied", "").inc()
    if duplicate:
        return
    for step, ms in timings_ms.items():
        STEP_SECONDS.labels(step).observe(ms / 1000)
    for kind, count in processed.model_dump().items():
        if count:
            OPERATIONS.labels(kind).inc(count)
    if indexing is not None:
        POINTS.labels("upserted").inc(indexing.points_upserted)
        POINTS.labels("deleted").inc(indexing.points_deleted)
        POINTS.labels("repointed").inc(indexing.points_repointed)
        CHUNKS_EMBEDDED.inc(indexing.chunks_embedded)
        EMBED_SECONDS.observe(indexing.embed_ms / 1000)


def record_refusal(code: str, server_side: bool) -> None:
    UPLOADS.labels("failed" if server_side else "refused", code).inc()


def exposition() -> tuple[bytes, str]:
    """This process's metrics, or every worker's in multiprocess mode."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated in prometheus-client
    return generate_latest(registry), CONTENT_TYPE_LATEST
