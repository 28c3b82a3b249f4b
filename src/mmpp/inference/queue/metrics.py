"""Prometheus metrics for one queue: depth, waits, run times, batch sizes and outcomes.

Each queue gets its own `CollectorRegistry` unless it is handed one, so tests and benchmarks that
build many queues never collide on metric names in the process-wide default registry.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

# "filtered": drawn, then refused by the image safety check.
OUTCOMES = ("done", "filtered", "failed", "cancelled", "timeout", "shutdown")
REJECTIONS = ("full", "already_queued", "closed", "no_workers")
# Seconds: a profile photo is minutes-scale at worst, and the Discord token caps waits at 15 minutes.
WAIT_BUCKETS = (0.05, 0.25, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900)
RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


class QueueMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.depth = Gauge("mmpp_queue_depth", "Jobs waiting for the GPU.", registry=r)
        self.running = Gauge("mmpp_queue_running", "Jobs in the engine call now.", registry=r)
        self.wait_seconds = Histogram(
            "mmpp_queue_wait_seconds", "Submit to start of generation.", buckets=WAIT_BUCKETS, registry=r
        )
        self.run_seconds = Histogram(
            "mmpp_queue_run_seconds", "Start of generation to result, per job.", buckets=RUN_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "mmpp_queue_batch_size", "Pictures per batch (a set of takes counts each).",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16), registry=r,
        )
        self.jobs = Counter("mmpp_queue_jobs", "Finished jobs by outcome.", ["outcome"], registry=r)
        self.rejected = Counter("mmpp_queue_rejected", "Refused submits by reason.", ["reason"], registry=r)
        # Zero-valued series up front so dashboards and rate() see every outcome from the start.
        for outcome in OUTCOMES:
            self.jobs.labels(outcome)
        for reason in REJECTIONS:
            self.rejected.labels(reason)

    def render(self) -> bytes:
        """The text exposition format, as a scrape would see it."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's current value (0.0 if absent); handy for tests and the status command."""
        found = self.registry.get_sample_value(name, labels or {})
        return 0.0 if found is None else found


def expose(
    port: int, registry: CollectorRegistry, addr: str = "127.0.0.1"
) -> tuple[WSGIServer, threading.Thread]:
    """Serve `registry` at http://addr:port/metrics from a daemon thread.

    Loopback by default: the numbers are harmless but an operator should choose to publish them.
    Port 0 picks a free port (read it from `server.server_port`); `server.shutdown()` stops it.
    """
    return start_http_server(port, addr=addr, registry=registry)
