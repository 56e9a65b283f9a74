"""Service settings, read once from the environment and frozen.

Every setting is an environment variable of the same name in upper case
(README "Settings" lists them). A bad value stops start-up with a message that
names the variable; nothing here writes back to `os.environ`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.names import COLLECTION_RULE, TENANT_RULE, is_collection_name, is_tenant

MIB = 1024 * 1024


class ConfigError(Exception):
    """A setting has a value the service cannot run with."""


class Settings(BaseSettings):
    """All settings of the service; build with `load_settings()`."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False,
                                      env_ignore_empty=True)

    upload_service_host: str = "0.0.0.0"
    upload_service_port: int = Field(8002, ge=1, le=65535)
    upload_service_log_level: Literal["debug", "info", "warning", "error"] = "info"

    qdrant_url: str = "http://qdrant:6333"
    qdrant_api_key: str | None = Field(None, repr=False)
    collection_name: str = Field("my-collection", min_length=1, max_length=255)
    qdrant_shard_number: int | None = Field(None, ge=1, le=1024)
    qdrant_replication_factor: int | None = Field(None, ge=1, le=64)
    qdrant_write_consistency_factor: int | None = Field(None, ge=1, le=64)
    qdrant_write_ordering: Literal["weak", "medium", "strong"] | None = None

    indexing_enabled: bool = True
    embedding_model: str = Field("wordllama", min_length=1)
    embedding_cache_dir: str | None = None
    index_max_file_kb: int = Field(1024, ge=1, le=1_048_576)
    # large batches are embedded in a helper process where two CPUs or more are usable
    embedding_process: bool = True
    # embedded engine (Qdrant Edge): build HNSW once this many points were written since
    # the last build; below it an exact scan answers in milliseconds (docs/indexing.md)
    index_hnsw_min_points: int = Field(100_000, ge=1)

    work_dir: str = "/work"
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "path"
    s3_region: str | None = None
    s3_max_connections: int = Field(32, ge=1, le=1024)
    s3_presign_endpoint_url: str | None = None
    direct_upload_expiry_secs: int = Field(900, ge=60, le=7 * 24 * 3600)
    scratch_dir: str | None = None

    # AUTH_MODE unset: CTXCE_AUTH_ENABLED=1 means "session" (the existing service's switch)
    auth_mode: Literal["none", "api_key", "jwt", "session"] = "none"
    api_keys_file: str | None = None
    jwt_secret: str | None = Field(None, repr=False)
    jwt_jwks_file: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_tenant_claim: str = "tenant"
    ctxce_auth_enabled: bool = False
    ctxce_auth_shared_token: str | None = Field(None, repr=False, min_length=8, max_length=1024)
    ctxce_auth_admin_token: str | None = Field(None, repr=False, min_length=16, max_length=1024)
    ctxce_auth_session_ttl_seconds: int = Field(0, ge=0, le=366 * 86_400)  # 0: never expire
    auth_default_tenant: str = "default"
    auth_login_max_failures: int = Field(5, ge=1, le=1000)  # per user name and per address
    auth_login_window_secs: int = Field(300, ge=1, le=86_400)
    rate_limit_requests_per_min: int = Field(0, ge=0)
    rate_limit_mb_per_min: int = Field(0, ge=0)
    event_rate_limit_per_min: int = Field(600, ge=0)  # object records per source address; 0: off
    rate_limit_auth_failures_per_min: int = Field(30, ge=0)  # per client address; 0: off
    rate_limit_open_per_min: int = Field(1200, ge=0)  # events, metrics, openapi, per address

    # HTTP hardening (README "Security"): gunicorn's parser limits and read deadlines
    limit_request_line: int = Field(8190, ge=256, le=65_536)
    limit_request_fields: int = Field(100, ge=10, le=32_768)
    limit_request_field_size: int = Field(8190, ge=256, le=65_536)
    request_head_timeout_secs: float = Field(10.0, gt=0, le=3600)
    request_body_timeout_secs: float = Field(10.0, gt=0, le=3600)
    request_body_min_rate_kb: int = Field(16, ge=1, le=1_048_576)  # KiB/s once the grace is spent
    events_max_body_kb: int = Field(256, ge=1, le=65_536)  # 100 records of RGW's size, with room
    json_max_body_kb: int = Field(64, ge=1, le=65_536)

    max_bundle_size_mb: int = Field(100, ge=1, le=10_240)
    max_uncompressed_mb: int = Field(1024, ge=1, le=102_400)
    max_bundle_members: int = Field(100_000, ge=1, le=10_000_000)
    max_metadata_mb: int = Field(64, ge=1, le=1024)
    upload_timeout_secs: int = Field(300, ge=1, le=86_400)
    lease_secs: float = Field(60.0, gt=0, le=86_400)
    claim_wait_secs: float = Field(30.0, ge=0, le=3600)
    # per storage/Qdrant request; unset: LEASE_SECS / 8 (at most 30 s), so that every
    # request of a claim ends well inside its lease (core.fence, docs/storage-layout.md)
    request_timeout_secs: float | None = Field(None, gt=0, le=300)
    apply_batch_files: int = Field(512, ge=1, le=100_000)  # tree writes between lease checks
    manifest_page_limit: int = Field(1000, ge=1, le=100_000)
    file_max_kb: int = Field(1024, ge=1, le=1_048_576)  # most text GET /api/v1/delta/file answers
    # retention (core/retention.py, the `gc` target): a committed sequence's raw bundle, plan,
    # result and journal entry go once a window set lets it go (beyond the last N, or older);
    # 0 turns a window off,
    # and with both off nothing committed is removed. The last sequence always stays.
    retention_keep_sequences: int = Field(100, ge=0, le=10_000_000)  # the last N of a workspace
    retention_max_age_hours: float = Field(168.0, ge=0, le=100 * 8760)  # committed less than this ago
    retention_batch: int = Field(1000, ge=1, le=100_000)  # objects of a kind per workspace per run
    fault_injection: str | None = None  # tests only: see core/faults.py
    google_cloud_project: str | None = None  # for trace ids in Cloud Logging

    @model_validator(mode="before")
    @classmethod
    def _ctxce_auth_enabled(cls, data: Any) -> Any:
        """The existing service's `CTXCE_AUTH_ENABLED=1` turns sessions on when AUTH_MODE is unset."""
        if isinstance(data, dict) and "auth_mode" not in data:
            enabled = data.get("ctxce_auth_enabled")
            if enabled is True or str(enabled).strip().lower() in ("1", "true", "yes", "on"):
                return {**data, "auth_mode": "session"}
        return data

    @field_validator("fault_injection")
    @classmethod
    def _known_fault(cls, value: str | None) -> str | None:
        from core.faults import Faults

        Faults.parse(value)
        return value

    @field_validator("auth_default_tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not is_tenant(value):
            raise ValueError(f"must be {TENANT_RULE}")
        return value

    @field_validator("collection_name")
    @classmethod
    def _collection(cls, value: str) -> str:
        if not is_collection_name(value):
            raise ValueError(f"must be {COLLECTION_RULE}")
        return value

    @field_validator("storage_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("s3://", "file://")):
            raise ValueError("must start with s3:// or file://")
        return value

    @model_validator(mode="after")
    def _timeouts_inside_the_lease(self) -> Settings:
        # a request's worst case (connect, send, answer) must leave room to renew the lease
        if max(3 * self.resolved_request_timeout, self.qdrant_request_bound) > self.lease_secs / 2:
            raise ValueError("REQUEST_TIMEOUT_SECS: a request's worst case (three of it, or two "
                             "whole seconds of it for a Qdrant server) must fit in half of LEASE_SECS")
        return self

    @property
    def resolved_request_timeout(self) -> float:
        return self.request_timeout_secs or min(30.0, self.lease_secs / 8)

    @property
    def qdrant_timeout(self) -> int:
        """qdrant-client takes whole seconds (it rounds up)."""
        return max(1, math.ceil(self.resolved_request_timeout))

    @property
    def qdrant_request_bound(self) -> float:
        """The longest a Qdrant server request stays in flight (connect, then answer);
        nothing for the embedded engine, which is a call in this process."""
        remote = self.qdrant_url.startswith(("http://", "https://"))
        return 2.0 * self.qdrant_timeout if remote and self.indexing_enabled else 0.0

    @property
    def resolved_storage_url(self) -> str:
        """`STORAGE_URL`, or the `WORK_DIR` folder when it is unset."""
        if self.storage_url:
            return self.storage_url
        return "file://" + str(Path(self.work_dir).absolute())

    @property
    def auth_enabled(self) -> bool:
        """Any AUTH_MODE but none: credentials required, sessions accepted (core.auth)."""
        return self.auth_mode != "none"

    @property
    def max_bundle_bytes(self) -> int:
        return self.max_bundle_size_mb * MIB

    @property
    def max_uncompressed_bytes(self) -> int:
        return self.max_uncompressed_mb * MIB

    @property
    def max_metadata_bytes(self) -> int:
        return self.max_metadata_mb * MIB


def load_settings() -> Settings:
    """Read the environment; raise `ConfigError` naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            problems.append(f"{name}: {error['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
