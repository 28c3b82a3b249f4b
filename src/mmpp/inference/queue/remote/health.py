"""`mmpp worker`'s metrics server: its drawing metrics, `/healthz`, and `/readyz` (Redis reachable,
engine loaded). The contract is `mmpp.health`'s; without METRICS_PORT nothing listens."""

from __future__ import annotations

import logging
from typing import Protocol

import redis

from mmpp.errors import UserFacingError
from mmpp.health import HealthServer
from mmpp.inference.queue.metrics import DrawMetrics
from mmpp.inference.queue.remote import transport as t
from mmpp.logs import log_event
from mmpp.settings import Settings

log = logging.getLogger(__name__)


class MetricsPortTaken(UserFacingError):
    code = "start_failed"


class Stopping(Protocol):
    """What readiness reads of the worker it serves (`worker.RemoteWorker`, which imports this module)."""

    @property
    def stopping(self) -> bool: ...


class WorkerHealth:
    def __init__(self, settings: Settings) -> None:
        self.metrics = DrawMetrics()
        self._worker: Stopping | None = None
        self._client = redis.Redis.from_url(
            settings.redis_url.get_secret_value(), socket_timeout=2, socket_connect_timeout=2
        )
        self.server: HealthServer | None = None
        if settings.metrics_port is None:
            return
        checks = {"redis": self._redis, "engine": self._engine}
        try:
            self.server = HealthServer(self.metrics.registry, checks, host=settings.metrics_host,
                                       port=settings.metrics_port)
        except OSError as exc:
            self._client.close()
            raise MetricsPortTaken(
                f"Cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: {exc.strerror or exc}. "
                "Pick another METRICS_PORT (one per worker on a machine)."
            ) from None
        log_event(log, logging.INFO, "metrics served", url=self.server.url)

    def loaded(self, worker: Stopping) -> None:
        self._worker = worker

    def _redis(self) -> str | None:
        try:
            self._client.ping()
        except t.REDIS_ERRORS as exc:
            return f"unreachable ({type(exc).__name__})"
        return None

    def _engine(self) -> str | None:
        if self._worker is None:
            return "loading"
        if self._worker.stopping:
            return "stopping"
        return None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self._client.close()
