"""`mmpp worker`: one GPU's engine, fed batches by the bot through Redis (arq), one batch at a time.

The worker only draws. It registers with a signed heartbeat key (TTL `HEARTBEAT_TTL_S`) that says it
is alive and which styles it has; the bot sends it a batch only when it has none, so nothing waits in
Redis. Each job's progress goes on its own Redis Stream, the portrait under a key with a TTL that
the bot deletes on reading (`streams`). Cancel flags are read after every denoising step, on the GPU
thread. A batch is drawn once, by one worker, before its expiry (its nonce is taken in Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from dataclasses import replace
from typing import Any

import redis
from arq.worker import Worker, func

from mmpp.errors import UserFacingError
from mmpp.inference.download import model_cache
from mmpp.inference.engine import Engine
from mmpp.inference.loader import load_catalog
from mmpp.inference.queue.jobs import Failed, Job
from mmpp.inference.queue.metrics import DrawMetrics
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote import transport as t
from mmpp.inference.queue.remote.front import model_resolution
from mmpp.inference.queue.remote.health import WorkerHealth
from mmpp.inference.queue.remote.sealing import Forged, Seal
from mmpp.inference.queue.remote.streams import CancelPolling, StreamSink
from mmpp.inference.queue.worker import EngineLike, GpuWorker
from mmpp.logs import log_event
from mmpp.memory import HeapTrimmer
from mmpp.settings import Settings

log = logging.getLogger(__name__)

# arq polls its queue this often; it is the pick-up latency a job pays on an idle worker.
POLL_DELAY_S = 0.005
# A batch's nonce is remembered this long past its expiry: clocks read a moment apart still agree.
NONCE_MARGIN_S = 60.0


class WorkerRefused(UserFacingError):
    code = "worker_refused"


class QuietWorker(Worker):
    """arq's worker without its health-check key: that key is unsigned, so anyone could write it, and
    nothing reads it. The signed heartbeat (`protocol.Heartbeat`) is the one health mechanism."""

    async def record_health(self) -> None:
        return None


class RemoteWorker:
    def __init__(
        self, engine: EngineLike, settings: Settings, worker_id: str, fingerprint: dict[str, Any],
        metrics: DrawMetrics | None = None, seal: Seal | None = None,
    ) -> None:
        self.engine = engine
        # What `mmpp worker` serves on METRICS_PORT (see `mmpp.inference.queue.remote.health`).
        self.metrics = metrics or DrawMetrics()
        self.settings = settings
        self.id = worker_id
        self.fingerprint = fingerprint
        url = settings.redis_url.get_secret_value()
        self.redis_settings = t.redis_settings(url)
        # For the GPU thread (cancel flags) and the events: short synchronous commands.
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.seal = seal or Seal.from_settings(settings, "this worker")
        self.busy = False
        self.batches = 0
        # A worker runs for weeks: freed heap goes back to the system between batches, as on the bot.
        self.trimmer = HeapTrimmer()
        self._stopping = False
        # Nonces this worker took, until they expire: a replay is refused here even if someone deleted
        # the nonce's key in Redis (which keeps several workers agreeing).
        self._nonces: dict[str, float] = {}
        # Gone for good: no heartbeat any more.
        self._left = False

    # --- arq's function -----------------------------------------------------------------------

    async def run_batch(self, ctx: dict[str, Any], payload: dict[str, Any]) -> str:
        try:
            batch = p.Batch.from_wire(self.seal.open_payload(payload))
        except (Forged, KeyError, ValueError, TypeError, OSError) as exc:
            # Not from a bot holding QUEUE_SECRET (or asking more takes than a bot sends): nothing is drawn.
            log_event(log, logging.WARNING, "batch refused", worker=self.id, why=str(exc) or type(exc).__name__)
            return "refused"
        batch_id, remote_jobs = batch.id, batch.jobs
        now_redis = await self._redis_time()
        # The nonce is taken in Redis (SET NX) until past the expiry: whichever worker sees the batch
        # first draws it, and a copy put back into any queue is refused, here or on another worker.
        ttl_ms = int((max(0.0, batch.not_after - now_redis) + NONCE_MARGIN_S) * 1000)
        self._nonces = {n: until for n, until in self._nonces.items() if until > time.monotonic()}
        try:
            fresh = batch.nonce not in self._nonces and await asyncio.to_thread(
                self.client.set, t.nonce_key(batch.nonce), self.id, nx=True, px=ttl_ms
            )
        except t.REDIS_ERRORS:
            fresh = False  # unknown: drawing it twice would be worse than the bot's own deadline
        self._nonces.setdefault(batch.nonce, time.monotonic() + ttl_ms / 1000)
        if not fresh:
            log_event(log, logging.WARNING, "batch refused", worker=self.id, batch=batch_id, why="replayed")
            return "replayed"
        attempts = {j.id: j.attempt for j in remote_jobs}
        # This worker's own batch limit, as its memory plan capped it: a set larger than that is split here.
        limit = self.settings.max_batch_size
        sink = StreamSink(self.client, attempts, self.seal,
                          min(limit, getattr(self.engine, "preferred_batch_size", None) or limit))
        now = time.monotonic()
        jobs = [
            Job(id=j.id, user_id=0, guild_id=None, request=j.request, submitted_at=now, deadline=now,
                previews=j.previews, more=[replace(j.request, seed=seed) for seed in j.more_seeds])
            for j in remote_jobs
        ]
        if now_redis > batch.not_after:
            # The member's Discord reply has expired: drawing now would help nobody.
            for job in jobs:
                sink.finish(job, Failed("expired"))
            log_event(log, logging.WARNING, "batch expired before start", batch=batch_id, jobs=len(jobs))
            return "expired"
        gpu = GpuWorker(
            CancelPolling(self.engine, self.client, self.seal, remote_jobs), sink,
            preview_every=self.settings.preview_every, name=self.id, metrics=self.metrics,
        )
        self.busy = True
        try:
            for job in jobs:
                job.started_at = now
                sink.started(job)
            await gpu.run_batch(jobs)
        except asyncio.CancelledError:
            # arq's BATCH_TIMEOUT_S ran out (or the loop was torn down): every member of the batch
            # hears it now, and the GPU thread stops at its next step.
            for job in jobs:
                job.request.cancel.set()
                sink.finish(job, Failed("batch_timeout"))
            log_event(log, logging.WARNING, "batch stopped, past BATCH_TIMEOUT_S", batch=batch_id, jobs=len(jobs),
                      timeout_s=self.settings.batch_timeout_s)
            # The engine is not shared between two batches: the next one starts only once this
            # one's GPU thread has seen its cancel flags (arq waits for this task, holding its one
            # job slot; a GPU hung for good keeps the worker busy rather than drawing two at once).
            await asyncio.to_thread(gpu.close, wait=True)
            raise
        finally:
            self.busy = False
            self.batches += 1
            gpu.close(wait=False)
        if self.trimmer.due():
            await asyncio.to_thread(self.trimmer.trim)
        return "done"

    async def _redis_time(self) -> float:
        """Now on the Redis server's clock, the one the bot set the not-after time on; this
        machine's own clock may be off by any amount. Unreadable: 0 (start; the bot keeps its own
        deadline)."""
        try:
            seconds, micros = await asyncio.to_thread(self.client.time)
        except t.REDIS_ERRORS:
            return 0.0
        return seconds + micros / 1e6

    # --- registration -------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """Asked to stop: it finishes its batch and takes nothing more (its heartbeat says so too)."""
        return self._stopping

    def heartbeat(self, at: float) -> p.Heartbeat:
        """`at`: now on Redis's clock, so the bot can tell this beat from a copy of an older one."""
        return p.Heartbeat(
            worker=self.id, device=str(getattr(self.engine, "device", "?")), max_batch=self.settings.max_batch_size,
            fingerprint=self.fingerprint, at=at, busy=self.busy, batches=self.batches, stopping=self._stopping,
        )

    async def _beat(self) -> None:
        """Alive while this key lives; a worker killed with -9 is noticed when it lapses."""
        reported = False
        while not self._left:
            try:
                await self._publish_heartbeat()
                if reported:
                    log_event(log, logging.INFO, "redis reachable again", worker=self.id)
                reported = False
            except t.REDIS_ERRORS:
                if not reported:
                    log_event(log, logging.WARNING, "redis unreachable, retrying", worker=self.id)
                reported = True
            await asyncio.sleep(t.HEARTBEAT_EVERY_S)

    async def _publish_heartbeat(self) -> None:
        def publish() -> None:
            seconds, micros = self.client.time()
            signed = self.seal.sign("heartbeat", self.heartbeat(seconds + micros / 1e6).to_wire())
            self.client.set(t.worker_key(self.id), signed, px=int(t.HEARTBEAT_TTL_S * 1000))

        await asyncio.to_thread(publish)

    def arq_worker(self) -> Worker:
        return QuietWorker(
            functions=[func(self.run_batch, name=t.BATCH_FUNCTION, max_tries=1, timeout=self.settings.batch_timeout_s)],
            queue_name=t.worker_queue(self.id),
            redis_settings=self.redis_settings,
            max_jobs=1,
            poll_delay=POLL_DELAY_S,
            keep_result=0,
            job_serializer=t.serialize,
            job_deserializer=t.deserialize,
            handle_signals=False,
            max_tries=1,
        )

    async def serve(self, stop: asyncio.Event) -> None:
        """Until `stop`: a lost Redis connection ends arq's loop, so it is simply started again."""
        worker = self.arq_worker()
        beat = asyncio.create_task(self._beat(), name="mmpp-heartbeat")
        log_event(log, logging.INFO, "worker ready", worker=self.id,
                  device=str(getattr(self.engine, "device", "?")),
                  redis=t.display_url(self.settings.redis_url.get_secret_value()))
        try:
            while not stop.is_set():
                main = asyncio.create_task(worker.main())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not main.done():
                    main.cancel()
                    with contextlib.suppress(asyncio.CancelledError, *t.REDIS_ERRORS):
                        await main
                    break
                error = main.exception()
                if error is not None and not isinstance(error, t.REDIS_ERRORS):
                    raise error
                log_event(log, logging.WARNING, "redis connection lost, reconnecting", worker=self.id)
                await asyncio.sleep(0.5)
        finally:
            # A polite stop (SIGTERM): arq's loop is gone, so no new batch is taken; the heartbeat
            # says "stopping" (the bot sends nothing more) and lives on until the batch on the GPU
            # is delivered. Without a heartbeat the bot would take this worker for lost and fail or
            # re-run a batch about to arrive.
            self._stopping = True
            with contextlib.suppress(*t.REDIS_ERRORS):
                await self._publish_heartbeat()
            running = [task for task in worker.tasks.values() if not task.done()]
            if running:
                log_event(log, logging.INFO, "stopping after the running batch", worker=self.id)
                await asyncio.wait(running, timeout=self.settings.batch_timeout_s)
            self._left = True
            beat.cancel()
            with contextlib.suppress(*t.REDIS_ERRORS):
                self.client.delete(t.worker_key(self.id))
            with contextlib.suppress(*t.REDIS_ERRORS):
                await worker.close()
            self.client.close()
            log_event(log, logging.INFO, "worker stopped", worker=self.id, batches=self.batches)


def check_catalog(client: redis.Redis, seal: Seal, fingerprint: dict[str, Any], wait_s: float) -> None:
    """Refuse to start (one line) when the bot's styles differ; wait a while for a bot to publish them.
    A catalog that does not verify is not the bot's (or the secrets differ): it is skipped, and named
    in the refusal when nothing else came."""
    deadline = time.monotonic() + wait_s
    announced = forged = False
    while True:
        try:
            raw = client.get(t.CATALOG_KEY)
        except t.REDIS_ERRORS as exc:
            raise WorkerRefused(f"Cannot reach Redis ({exc.__class__.__name__}). Check REDIS_URL.") from None
        if raw is not None:
            try:
                bot = p.Catalog.from_wire(seal.verify("catalog", raw)).fingerprint
                break
            except (Forged, ValueError, KeyError, TypeError) as exc:
                if not forged:
                    log_event(log, logging.WARNING, "catalog in redis ignored", why=str(exc) or type(exc).__name__)
                forged = True
        if time.monotonic() > deadline:
            if forged:
                raise WorkerRefused(
                    "The styles in Redis are not signed with this QUEUE_SECRET: give this worker the bot's."
                )
            raise WorkerRefused(
                "No bot has published its styles in Redis yet. Start `mmpp bot` with QUEUE_BACKEND=redis."
            )
        if not announced:
            log_event(log, logging.INFO, "waiting for a bot to publish its styles")
            announced = True
        time.sleep(0.5)
    difference = p.describe_difference(bot, fingerprint)
    if difference is not None:
        raise WorkerRefused(f"This worker's models differ from the bot's: {difference}.")


def worker_device(settings: Settings) -> str:
    from mmpp.inference.queue.devices import resolve_devices

    devices = resolve_devices(settings)
    if len(devices) != 1:
        raise WorkerRefused(
            f"A worker draws on one device; run one `mmpp worker` per GPU (DEVICES={settings.devices})."
        )
    return devices[0]


async def run_worker(settings: Settings, *, catalog_wait_s: float = 60.0) -> int:
    """`mmpp worker`: check the styles against the bot's, load the engine, serve until SIGTERM."""
    url = settings.redis_url.get_secret_value()
    t.redis_settings(url)  # registers the password before anything can log it
    seal = Seal.from_settings(settings, "this worker")
    worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    device = worker_device(settings)
    log_event(log, logging.INFO, "worker starting", worker=worker_id, env_file=settings.env_file_words(),
              model_cache=str(settings.model_dir or model_cache()), device=device)
    # Up before the styles check and the model load: /healthz answers, /readyz says "engine: loading".
    health = WorkerHealth(settings)
    try:
        catalog = load_catalog(settings)
        fingerprint = p.catalog_fingerprint(catalog, model_resolution(settings))
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            await asyncio.to_thread(check_catalog, client, seal, fingerprint, catalog_wait_s)
        finally:
            client.close()
        engine = await asyncio.to_thread(Engine.from_settings, settings.model_copy(update={"device": device}))
        worker = RemoteWorker(engine, settings, worker_id, fingerprint, metrics=health.metrics, seal=seal)
        health.loaded(worker)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await worker.serve(stop)
    finally:
        health.close()
    return 0
