"""The bot's own Prometheus metrics, beside its queue's (`mmpp.inference.queue.metrics`) in one registry.

- `mmpp_bot_outcomes_total{outcome}`: each job's final outcome as its log row records it (delivered,
  filtered, failed, cancelled, ...), counted where `LogWrites.finished` is called.
- `mmpp_bot_ack_seconds`: interaction receipt (the gateway event, on the loop) to the end of its first
  response (the interaction callback's HTTP answer). Discord gives a bot 3 s; members notice after 1.
- `mmpp_discord_rest_errors_total{status}`: Discord's REST answers of 400 and above, and `network`
  for a request that got no answer; 429s included, since they show a bot running into its limits.
- `mmpp_queue_servers_waiting`, `mmpp_queue_workers`: read from the queue at each scrape.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, get_args

import aiohttp
from prometheus_client import Counter, Gauge, Histogram

from mmpp.bot.db.job_log import Outcome

if TYPE_CHECKING:
    from mmpp.inference.queue import GenerationQueue

# Around the 1 s a member notices and the 3 s Discord allows.
ACK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
# POST /interactions/{id}/{token}/callback: the first response. The token never leaves this module.
_CALLBACK = re.compile(r"/interactions/(\d+)/[^/]+/callback$")
# An interaction not answered after this long never will be (Discord's token lasts 15 minutes).
_FORGET_AFTER_S = 15 * 60
_MOST_PENDING = 10_000


class BotMetrics:
    def __init__(self, queue: GenerationQueue) -> None:
        r = queue.metrics.registry
        self.registry = r
        self.outcomes = Counter("mmpp_bot_outcomes", "Jobs by final outcome, as the job log records it.",
                                ["outcome"], registry=r)
        for outcome in get_args(Outcome):
            self.outcomes.labels(outcome)
        self.ack_seconds = Histogram(
            "mmpp_bot_ack_seconds", "Interaction receipt to the end of its first response.",
            buckets=ACK_BUCKETS, registry=r,
        )
        self.rest_errors = Counter("mmpp_discord_rest_errors", "Discord REST answers >= 400 (and network errors).",
                                   ["status"], registry=r)
        self.servers_waiting = Gauge("mmpp_queue_servers_waiting", "Servers (and DM members) with a job waiting.",
                                     registry=r)
        self.servers_waiting.set_function(lambda: queue.servers_waiting)
        self.workers = Gauge("mmpp_queue_workers", "Engines and live remote workers serving the queue.", registry=r)
        self.workers.set_function(lambda: queue.workers)
        self._received: dict[int, float] = {}

    def outcome(self, outcome: str) -> None:
        self.outcomes.labels(outcome).inc()

    def received(self, interaction_id: int) -> None:
        """An interaction arrived (called synchronously from the gateway's dispatch)."""
        now = time.monotonic()
        # Kept in arrival order: the ones to forget are at the front, and a crowd of fresh ones
        # costs nothing to look past (the dict is not rebuilt on every interaction).
        while len(self._received) >= _MOST_PENDING:
            oldest, at = next(iter(self._received.items()))
            if now - at < _FORGET_AFTER_S:
                break
            del self._received[oldest]
        self._received[interaction_id] = now

    def trace(self, base: aiohttp.TraceConfig | None = None) -> aiohttp.TraceConfig:
        """discord.py's `http_trace`: REST errors and acknowledgement times, added to `base` if given."""
        trace = base or aiohttp.TraceConfig()

        async def on_request_end(
            session: aiohttp.ClientSession, context: object, params: aiohttp.TraceRequestEndParams
        ) -> None:
            status = params.response.status
            if status >= 400:
                self.rest_errors.labels(str(status)).inc()
            if params.method == "POST" and (match := _CALLBACK.search(params.url.path)):
                started = self._received.pop(int(match.group(1)), None)
                if started is not None:
                    self.ack_seconds.observe(time.monotonic() - started)

        async def on_request_exception(
            session: aiohttp.ClientSession, context: object, params: aiohttp.TraceRequestExceptionParams
        ) -> None:
            self.rest_errors.labels("network").inc()

        trace.on_request_end.append(on_request_end)
        trace.on_request_exception.append(on_request_exception)
        return trace
