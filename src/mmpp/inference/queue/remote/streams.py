"""The worker's two ends of a job in Redis: `CancelPolling` reads the job's cancel flag after every
denoising step, `StreamSink` writes its events and pictures. Both name the job's keys by its tag and
speak in `protocol` records, sealed or signed by `sealing`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import redis

from mmpp.inference.engine import GenerationRequest, GenerationResult, StepProgress, to_png
from mmpp.inference.queue.jobs import Cancelled, Done, Failed, Job, JobEvent, Step, TerminalEvent
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote import transport as t
from mmpp.inference.queue.remote.sealing import Seal
from mmpp.inference.queue.worker import EngineLike
from mmpp.inference.styles import StyleCatalog
from mmpp.logs import log_event

log = logging.getLogger(__name__)


class CancelPolling:
    """The engine, plus a look at the jobs' Redis cancel flags after every step (on the GPU thread,
    so a `/cancel` stops the job at the next step, whatever the event loop is doing). Only the flag
    the bot signed for that job and attempt cancels it; anything else there is logged once, ignored."""

    def __init__(self, engine: EngineLike, client: redis.Redis, seal: Seal, jobs: Sequence[p.RemoteJob]) -> None:
        self._engine = engine
        self._client = client
        self._seal = seal
        # id(request.cancel) -> its job (a redraw's request shares the flag)
        self._jobs = {id(j.request.cancel): j for j in jobs}
        self._forged: set[str] = set()

    @property
    def catalog(self) -> StyleCatalog:
        return self._engine.catalog

    def _poll(self, requests: Sequence[GenerationRequest]) -> None:
        jobs = [self._jobs[id(r.cancel)] for r in requests]
        try:
            flags = self._client.mget([t.cancel_key(self._seal.tag(j.id, j.attempt)) for j in jobs])
        except t.REDIS_ERRORS:
            return  # Redis is away: keep drawing, the bot decides what a lost connection means
        for request, job, flag in zip(requests, jobs, flags, strict=True):
            if self._seal.is_cancel(job.id, job.attempt, flag):
                request.cancel.set()
            elif flag is not None and job.id not in self._forged:
                self._forged.add(job.id)
                log_event(log, logging.WARNING, "forged cancel ignored", job=job.id)

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

    def _add(self, job: Job, event: p.Event, pngs: dict[int, bytes] | None = None) -> None:
        attempt = self._attempts[job.id]
        tag = self._seal.tag(job.id, attempt)
        key = t.events_key(tag)
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for take, png in (pngs or {}).items():
                    # A later take is sealed under its own name, so no take can stand in for another.
                    pipe.set(t.result_key(tag, take),
                             self._seal.seal_result(t.take_name(job.id, take), attempt, png), ex=t.EVENT_TTL_S)
                pipe.xadd(key, self._seal.seal_event(job.id, attempt, event.to_wire()))  # type: ignore[arg-type]
                pipe.expire(key, t.EVENT_TTL_S)
                pipe.execute()
        except t.REDIS_ERRORS:
            # The bot sees the connection drop too and tells the member or runs the job again.
            log_event(log, logging.WARNING, "event lost, redis unreachable", job=job.id, kind=event.kind)

    def started(self, job: Job) -> None:
        self._add(job, p.Event("started"))

    def emit(self, job: Job, event: JobEvent) -> None:
        if isinstance(event, Step):
            preview = to_png(event.preview) if event.preview is not None else None
            self._add(job, p.Event("step", step=event.i, steps=event.n, preview=preview))

    def finish(self, job: Job, event: TerminalEvent) -> None:
        if job.terminal is not None:
            return  # a cancel announced mid-batch, then the batch's own result
        job.terminal = event
        if isinstance(event, Done):
            # Each drawn take under its own key; a take the safety check refused sends no pixels.
            takes = tuple(p.Take(r.seed, r.linkable, r.flagged, r.guard, r.may_link) for r in event.results)
            pngs = {i: r.png() for i, r in enumerate(event.results) if not r.flagged}
            self._add(job, p.Event("done", takes=takes, seconds=event.result.seconds), pngs)
        elif isinstance(event, Failed):
            # A code and its fields (numbers, names), never words: the bot words them.
            self._add(job, p.Event("failed", code=event.code, fields=dict(event.fields)))
        elif isinstance(event, Cancelled):
            self._add(job, p.Event("cancelled"))

    def batch_measured(self, jobs: Sequence[Job], seconds: float) -> None:
        self.seconds = seconds
