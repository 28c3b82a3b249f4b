"""Prometheus metrics for one queue (depth, waits, run times, batch sizes, outcomes) and for the
engines that draw (`DrawMetrics`: batches, seconds per picture, GPU peak memory, redraws, refusals).

Each queue gets its own `CollectorRegistry` unless it is handed one, so tests and benchmarks that
build many queues never collide on metric names in the process-wide default registry. The bot's
queue and a `mmpp worker` export the same `mmpp_worker_*` names for the drawing they do, so one
dashboard panel covers a bot that draws itself and one that has workers. `mmpp.health` serves them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# "filtered": drawn, then refused by the image safety check.
OUTCOMES = ("done", "filtered", "failed", "cancelled", "timeout", "shutdown")
REJECTIONS = ("full", "already_queued", "closed", "no_workers")
# Seconds: a profile photo is minutes-scale at worst, and the Discord token caps waits at 15 minutes.
WAIT_BUCKETS = (0.05, 0.25, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900)
RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
# One SDXL picture: about 2 s on a big GPU, 10-20 s on a 3060, minutes on a CPU.
PICTURE_BUCKETS = (0.5, 1, 2, 3, 5, 8, 12, 20, 30, 60, 120, 300)


class DrawMetrics:
    """What one process's engines did: `mmpp worker` serves these alone, the bot beside its queue's."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.batches = Counter("mmpp_worker_batches", "Batches drawn (engine calls of one batch count once).",
                               registry=r)
        self.picture_seconds = Histogram(
            "mmpp_worker_picture_seconds", "Engine seconds per picture (a batch's time over its pictures).",
            buckets=PICTURE_BUCKETS, registry=r,
        )
        # torch.cuda.max_memory_allocated after each batch; stays 0 where nothing draws on CUDA.
        self.gpu_peak_bytes = Gauge(
            "mmpp_worker_gpu_peak_memory_bytes", "Most GPU memory PyTorch held at once since the start.",
            ["device"], registry=r,
        )
        self.redraws = Counter("mmpp_worker_unlinkable_redraws",
                               "Pictures drawn again because they looked too much like the selfie.", registry=r)
        self.refusals = Counter("mmpp_worker_safety_refusals",
                                "Pictures the image safety check refused (never posted).", registry=r)

    def batch_drawn(self, pictures: int, seconds: float, device: str) -> None:
        self.batches.inc()
        for _ in range(max(1, pictures)):  # so sum/count is seconds per picture, not per batch
            self.picture_seconds.observe(seconds / max(1, pictures))
        if device.startswith("cuda"):
            import torch

            self.gpu_peak_bytes.labels(device).set(torch.cuda.max_memory_allocated(device))


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
        # The engines behind this queue (none with remote workers: they export their own).
        self.draw = DrawMetrics(r)
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

