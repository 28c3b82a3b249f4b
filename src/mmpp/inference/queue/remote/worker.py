"""`mmpp worker`: one GPU's engine, fed batches by the bot through Redis (arq), one batch at a time.

The worker only draws. It registers with a heartbeat key (TTL `HEARTBEAT_TTL_S`) that says it is
alive and which styles it has; the bot sends it a batch only when it has none, so nothing waits in
Redis. Each job's progress goes on its own Redis Stream, the portrait under a key with a TTL that
the bot deletes on reading. Cancel flags are read after every denoising step, on the GPU thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import redis
from arq.worker import Worker, func

from mmpp.errors import UserFacingError
from mmpp.inference.engine import Engine, GenerationRequest, GenerationResult, StepProgress, to_png
from mmpp.inference.loader import load_catalog
from mmpp.inference.queue.jobs import Cancelled, Done, Failed, Job, JobEvent, Step, TerminalEvent
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote.front import model_resolution
from mmpp.inference.queue.remote.sealing import Forged, Seal, check_transport
from mmpp.inference.queue.worker import EngineLike, GpuWorker
from mmpp.inference.styles import StyleCatalog
from mmpp.logs import log_event
from mmpp.memory import HeapTrimmer
from mmpp.settings import Settings

log = logging.getLogger(__name__)

# arq polls its queue this often; it is the pick-up latency a job pays on an idle worker.
POLL_DELAY_S = 0.005


class WorkerRefused(UserFacingError):
    code = "worker_refused"


class CancelPolling:
    """The engine, plus a look at the jobs' Redis cancel flags after every step (on the GPU thread,
    so a `/cancel` stops the job at the next step, whatever the event loop is doing)."""

    def __init__(self, engine: EngineLike, client: redis.Redis, keys: dict[int, str]) -> None:
        self._engine = engine
        self._client = client
        self._keys = keys  # id(request.cancel) -> its cancel key (a redraw's request shares the flag)

    @property
    def catalog(self) -> StyleCatalog:
        return self._engine.catalog

    def _poll(self, requests: Sequence[GenerationRequest]) -> None:
        try:
            flags = self._client.mget([self._keys[id(r.cancel)] for r in requests])
        except p.REDIS_ERRORS:
            return  # Redis is away: keep drawing, the bot decides what a lost connection means
        for request, flag in zip(requests, flags, strict=True):
            if flag is not None:
                request.cancel.set()

    def generate(
        self, requests: Sequence[GenerationRequest], on_step: Callable[[StepProgress], None] | None = None
    ) -> list[GenerationResult]:
        self._poll(requests)

        def polled(progress: StepProgress) -> None:
            self._poll(requests)
            if on_step is not None:
                on_step(progress)

        return self._engine.generate(requests, polled)


class StreamSink:
    """The queue side of `GpuWorker` on a worker: every event goes onto the job's Redis Stream."""

    def __init__(self, client: redis.Redis, attempts: dict[str, int], seal: Seal, max_batch_size: int) -> None:
        self._client = client
        self._seal = seal
        self._attempts = attempts
        self.seconds = 0.0
        # This worker's own limit: a set larger than it is drawn in several calls here.
        self.max_batch_size = max_batch_size

    async def next_batch(self) -> list[Job] | None:  # batches come from arq, not from here
        return None

    def _add(self, job: Job, fields: dict[str, Any], takes: dict[int, bytes] | None = None) -> None:
        attempt = self._attempts[job.id]
        key = p.events_key(job.id, attempt)
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for take, png in (takes or {}).items():
                    # A later take is sealed under its own name, so no take can stand in for another.
                    pipe.set(p.result_key(job.id, attempt, take),
                             self._seal.seal_result(p.take_name(job.id, take), attempt, png), ex=p.EVENT_TTL_S)
                pipe.xadd(key, self._seal.seal_event(job.id, attempt, fields))  # type: ignore[arg-type]
                pipe.expire(key, p.EVENT_TTL_S)
                pipe.execute()
        except p.REDIS_ERRORS:
            # The bot sees the connection drop too and tells the member or runs the job again.
            log_event(log, logging.WARNING, "event lost, redis unreachable", job=job.id, kind=fields.get("k"))

    def started(self, job: Job) -> None:
        self._add(job, {"k": "started"})

    def emit(self, job: Job, event: JobEvent) -> None:
        if isinstance(event, Step):
            preview = to_png(event.preview) if event.preview is not None else None
            self._add(job, {"k": "step", "i": event.i, "n": event.n, "p": preview})

    def finish(self, job: Job, event: TerminalEvent) -> None:
        if job.terminal is not None:
            return  # a cancel announced mid-batch, then the batch's own result
        job.terminal = event
        if isinstance(event, Done) and len(event.results) > 1:
            # A set: each drawn take under its own key, the list of takes in the event.
            takes = [{"seed": r.seed, "l": int(r.linkable), "f": int(r.flagged), "g": r.guard, "m": int(r.may_link)}
                     for r in event.results]
            kind = "filtered" if all(r.flagged for r in event.results) else "done"
            pngs = {i: r.png() for i, r in enumerate(event.results) if not r.flagged}
            self._add(job, {"k": kind, "t": takes, "s": event.result.seconds}, takes=pngs)
        elif isinstance(event, Done) and event.result.flagged:
            # The safety check refused it: no pixels leave this machine.
            self._add(job, {"k": "filtered", "seed": event.result.seed, "s": event.result.seconds})
        elif isinstance(event, Done):
            result = event.result
            fields = {"k": "done", "seed": result.seed, "s": result.seconds, "l": 1 if result.linkable else None,
                      "g": result.guard, "m": int(result.may_link)}
            self._add(job, fields, takes={0: result.png()})
        elif isinstance(event, Failed):
            # A code and its fields (numbers, names), never words: the bot words them.
            failed: dict[str, Any] = {"k": "failed", "code": event.code}
            if event.fields:
                failed["fields"] = dict(event.fields)
            self._add(job, failed)
        elif isinstance(event, Cancelled):
            self._add(job, {"k": "cancelled"})

    def batch_measured(self, jobs: Sequence[Job], seconds: float) -> None:
        self.seconds = seconds


class RemoteWorker:
    def __init__(
        self, engine: EngineLike, settings: Settings, worker_id: str, fingerprint: dict[str, Any]
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.id = worker_id
        self.fingerprint = fingerprint
        url = settings.redis_url.get_secret_value()
        self.redis_settings = p.redis_settings(url)
        # For the GPU thread (cancel flags) and the events: short synchronous commands.
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.seal = Seal(settings.queue_secret.get_secret_value() if settings.queue_secret else None)
        self.busy = False
        self.batches = 0
        # A worker runs for weeks: freed heap goes back to the system between batches, as on the bot.
        self.trimmer = HeapTrimmer()
        self._stopping = False
        # Gone for good: no heartbeat any more.
        self._left = False

    # --- arq's function -----------------------------------------------------------------------

    async def run_batch(self, ctx: dict[str, Any], payload: dict[str, Any]) -> str:
        try:
            batch_id, not_after, remote_jobs = p.decode_batch(self.seal.open_payload(payload))
        except (Forged, KeyError, ValueError, TypeError, OSError) as exc:
            # Not from a bot holding QUEUE_SECRET (or asking more takes than a bot sends): nothing is drawn.
            log_event(log, logging.WARNING, "batch refused", worker=self.id, why=str(exc) or type(exc).__name__)
            return "refused"
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
        if await self._redis_time() > not_after:
            # The member's Discord reply has expired: drawing now would help nobody.
            for job in jobs:
                sink.finish(job, Failed("expired"))
            log_event(log, logging.WARNING, "batch expired before start", batch=batch_id, jobs=len(jobs))
            return "expired"
        keys = {id(j.request.cancel): p.cancel_key(j.id, j.attempt) for j in remote_jobs}
        gpu = GpuWorker(
            CancelPolling(self.engine, self.client, keys), sink, preview_every=self.settings.preview_every, name=self.id
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
        except p.REDIS_ERRORS:
            return 0.0
        return seconds + micros / 1e6

    # --- registration -------------------------------------------------------------------------

    def heartbeat(self) -> dict[str, Any]:
        return {
            "id": self.id, "device": str(getattr(self.engine, "device", "?")), "busy": self.busy,
            "batches": self.batches,
            "max_batch": self.settings.max_batch_size, "fingerprint": self.fingerprint,
            # Stopping: alive until its batch is delivered, but the bot sends it nothing more.
            "stopping": self._stopping,
        }

    async def _beat(self) -> None:
        """Alive while this key lives; a worker killed with -9 is noticed when it lapses."""
        reported = False
        while not self._left:
            try:
                await self._publish_heartbeat()
                if reported:
                    log_event(log, logging.INFO, "redis reachable again", worker=self.id)
                reported = False
            except p.REDIS_ERRORS:
                if not reported:
                    log_event(log, logging.WARNING, "redis unreachable, retrying", worker=self.id)
                reported = True
            await asyncio.sleep(p.HEARTBEAT_EVERY_S)

    async def _publish_heartbeat(self) -> None:
        await asyncio.to_thread(
            self.client.set, p.worker_key(self.id), json.dumps(self.heartbeat()), px=int(p.HEARTBEAT_TTL_S * 1000),
        )

    def arq_worker(self) -> Worker:
        return Worker(
            functions=[func(self.run_batch, name=p.BATCH_FUNCTION, max_tries=1, timeout=self.settings.batch_timeout_s)],
            queue_name=p.worker_queue(self.id),
            redis_settings=self.redis_settings,
            max_jobs=1,
            poll_delay=POLL_DELAY_S,
            keep_result=0,
            job_serializer=p.serialize,
            job_deserializer=p.deserialize,
            handle_signals=False,
            health_check_interval=60,
            max_tries=1,
        )

    async def serve(self, stop: asyncio.Event) -> None:
        """Until `stop`: a lost Redis connection ends arq's loop, so it is simply started again."""
        worker = self.arq_worker()
        beat = asyncio.create_task(self._beat(), name="mmpp-heartbeat")
        log_event(log, logging.INFO, "worker ready", worker=self.id,
                  device=str(getattr(self.engine, "device", "?")),
                  redis=p.display_url(self.settings.redis_url.get_secret_value()))
        try:
            while not stop.is_set():
                main = asyncio.create_task(worker.main())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not main.done():
                    main.cancel()
                    with contextlib.suppress(asyncio.CancelledError, *p.REDIS_ERRORS):
                        await main
                    break
                error = main.exception()
                if error is not None and not isinstance(error, p.REDIS_ERRORS):
                    raise error
                log_event(log, logging.WARNING, "redis connection lost, reconnecting", worker=self.id)
                await asyncio.sleep(0.5)
        finally:
            # A polite stop (SIGTERM): arq's loop is gone, so no new batch is taken; the heartbeat
            # says "stopping" (the bot sends nothing more) and lives on until the batch on the GPU
            # is delivered. Without a heartbeat the bot would take this worker for lost and fail or
            # re-run a batch about to arrive.
            self._stopping = True
            with contextlib.suppress(*p.REDIS_ERRORS):
                await self._publish_heartbeat()
            running = [t for t in worker.tasks.values() if not t.done()]
            if running:
                log_event(log, logging.INFO, "stopping after the running batch", worker=self.id)
                await asyncio.wait(running, timeout=self.settings.batch_timeout_s)
            self._left = True
            beat.cancel()
            with contextlib.suppress(*p.REDIS_ERRORS):
                self.client.delete(p.worker_key(self.id))
            with contextlib.suppress(*p.REDIS_ERRORS):
                await worker.close()
            self.client.close()
            log_event(log, logging.INFO, "worker stopped", worker=self.id, batches=self.batches)


def check_catalog(client: redis.Redis, fingerprint: dict[str, Any], wait_s: float) -> None:
    """Refuse to start (one line) when the bot's styles differ; wait a while for a bot to publish them."""
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        try:
            raw = client.get(p.CATALOG_KEY)
        except p.REDIS_ERRORS as exc:
            raise WorkerRefused(f"Cannot reach Redis ({exc.__class__.__name__}). Check REDIS_URL.") from None
        if raw is not None:
            break
        if time.monotonic() > deadline:
            raise WorkerRefused(
                "No bot has published its styles in Redis yet. Start `mmpp bot` with QUEUE_BACKEND=redis."
            )
        if not announced:
            log_event(log, logging.INFO, "waiting for a bot to publish its styles")
            announced = True
        time.sleep(0.5)
    difference = p.describe_difference(json.loads(raw), fingerprint)
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
    p.redis_settings(url)  # registers the password before anything can log it
    check_transport(url, Seal(settings.queue_secret.get_secret_value() if settings.queue_secret else None))
    worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    device = worker_device(settings)
    catalog = load_catalog(settings)
    fingerprint = p.catalog_fingerprint(catalog, model_resolution(settings))
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        await asyncio.to_thread(check_catalog, client, fingerprint, catalog_wait_s)
    finally:
        client.close()
    engine = await asyncio.to_thread(Engine.from_settings, settings.model_copy(update={"device": device}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await RemoteWorker(engine, settings, worker_id, fingerprint).serve(stop)
    return 0
