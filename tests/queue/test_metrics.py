"""What an operator's dashboard sees: depth, waits, run times and outcomes, over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request

from mmpp.health import HealthServer
from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.queue import AlreadyQueued, QueueFull, QueueMetrics
from tests.queue.conftest import QueueFactory, started


async def test_metrics_count_outcomes_depth_and_times(make_queue: QueueFactory, face: PreparedFace) -> None:
    queue, probe = make_queue(max_batch_size=1)
    m = queue.metrics
    async with queue:
        probe.hold()
        first = queue.submit(face, "tiny-style", user_id=1, guild_id=1)
        await started(first)
        cancelled = queue.submit(face, "tiny-style", user_id=2, guild_id=1)
        queue.submit(face, "tiny-style", user_id=3, guild_id=1, deadline=time.monotonic() + 0.05)
        assert m.value("mmpp_queue_depth") == 2
        assert m.value("mmpp_queue_running") == 1
        cancelled.cancel()
        await asyncio.sleep(0.2)
        probe.release()
        await first.outcome()

    assert m.value("mmpp_queue_jobs_total", {"outcome": "done"}) == 1
    assert m.value("mmpp_queue_jobs_total", {"outcome": "cancelled"}) == 1
    assert m.value("mmpp_queue_jobs_total", {"outcome": "timeout"}) == 1
    assert m.value("mmpp_queue_depth") == 0 and m.value("mmpp_queue_running") == 0
    assert m.value("mmpp_queue_wait_seconds_count") == 1
    assert m.value("mmpp_queue_run_seconds_count") == 1
    assert m.value("mmpp_queue_run_seconds_sum") > 0


async def test_refused_submits_are_counted_by_reason(make_queue: QueueFactory, face: PreparedFace) -> None:
    queue, probe = make_queue(queue_capacity=1)
    async with queue:
        probe.hold()
        first = queue.submit(face, "tiny-style", user_id=1, guild_id=1)
        await started(first)
        queue.submit(face, "tiny-style", user_id=2, guild_id=1)
        for user in (1, 3):
            with contextlib.suppress(AlreadyQueued, QueueFull):
                queue.submit(face, "tiny-style", user_id=user, guild_id=1)
        probe.release()
    assert queue.metrics.value("mmpp_queue_rejected_total", {"reason": "already_queued"}) == 1
    assert queue.metrics.value("mmpp_queue_rejected_total", {"reason": "full"}) == 1


def test_each_queue_has_its_own_registry_and_it_can_be_scraped() -> None:
    one, two = QueueMetrics(), QueueMetrics()  # same names, no "Duplicated timeseries" error
    one.jobs.labels("done").inc()
    assert two.value("mmpp_queue_jobs_total", {"outcome": "done"}) == 0
    server = HealthServer(one.registry)
    try:
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.close()
    assert 'mmpp_queue_jobs_total{outcome="done"} 1.0' in text
    assert "mmpp_queue_wait_seconds_bucket" in text and "mmpp_queue_depth" in text

