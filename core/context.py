"""What a process builds once and every request shares: settings, storage, pipeline.

Built lazily on the first request, so importing a function module stays cheap;
nothing in it changes per request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

from core.auth import Authenticator, AuthService, build_auth_service
from core.config import Settings, load_settings
from core.csrf import load_secret
from core.deletion import Deleter
from core.direct import DirectUploads
from core.indexing.indexer import Indexer
from core.logs import configure_logging
from core.pipeline import Pipeline
from core.qdrant import QdrantHandle
from core.ratelimit import RateLimiter
from core.reindex import Reindexing
from core.search import Searcher
from core.storage import ObjectStore, open_store


@dataclass
class ServiceContext:
    settings: Settings

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(self.settings)

    @cached_property
    def indexer(self) -> Indexer | None:
        return Indexer(self.settings, self.qdrant) if self.settings.indexing_enabled else None

    @cached_property
    def reindexing(self) -> Reindexing:
        return Reindexing(self.settings, self.store, self.indexer)

    @cached_property
    def pipeline(self) -> Pipeline:
        return Pipeline(self.settings, self.store, self.indexer, rebuilds=self.reindexing.building_target)

    @cached_property
    def searcher(self) -> Searcher:
        return Searcher(self.settings, self.store, self.indexer)

    @cached_property
    def authenticator(self) -> Authenticator:
        return Authenticator(self.settings, self.store if self.settings.auth_enabled else None)

    @cached_property
    def auth(self) -> AuthService:
        return build_auth_service(self.settings, self.store, self.authenticator)

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.settings.rate_limit_requests_per_min,
                           self.settings.rate_limit_mb_per_min * 1024 * 1024,
                           self.settings.rate_limit_auth_failures_per_min,
                           self.settings.rate_limit_open_per_min)

    @cached_property
    def event_limiter(self) -> RateLimiter:
        """The open events endpoint's budget: records per minute per source address."""
        return RateLimiter(self.settings.event_rate_limit_per_min, 0)

    @cached_property
    def direct(self) -> DirectUploads:
        return DirectUploads(self.settings, self.store, self.pipeline)

    @cached_property
    def csrf_secret(self) -> bytes:
        """The admin console's CSRF secret: write-once in the store, so read once (core.csrf)."""
        return load_secret(self.store)

    @cached_property
    def qdrant(self) -> QdrantHandle:
        return QdrantHandle(self.settings)

    @cached_property
    def deletion(self) -> Deleter:
        """Deletes a tenant's workspaces and collections (`core.deletion`)."""
        return Deleter(self.settings, self.store, self.indexer, rebuilds=self.reindexing.building_target)


_lock = threading.Lock()
_context: ServiceContext | None = None


def service_context() -> ServiceContext:
    """The process-wide context, created on first use from the environment.

    Raises `ConfigError` naming the variable when a setting is bad; function
    modules call it at import so that a bad setting stops start-up.
    """
    global _context
    with _lock:
        if _context is None:
            context = ServiceContext(load_settings())
            configure_logging(context.settings.upload_service_log_level)
            context.authenticator  # noqa: B018 - a bad key file or secret stops start-up
            _context = context
        return _context
