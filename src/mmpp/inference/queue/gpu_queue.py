"""The in-process GPU queue: bounded, fair across servers, one job per member, batched by style.

This module is the queue's front and its conductor: who may join (`admit`, `submit`), what a member
may ask, and when a batch is taken (the idle window). The jobs' own state (places, deadlines, ends)
is `line.py`'s, the runners that draw and what their end means `crew.py`'s, and stopping the whole
queue `shutdown.py`'s.

All bookkeeping runs on the event loop thread, so nothing here needs a lock; the GPU thread only
sees requests and cancel flags (see `worker.py`). `submit` is synchronous and cheap so the bot can
answer the interaction immediately with the member's place in line.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

from mmpp.errors import UserFacingError
from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.generation import GenerationRequest, SafetyLevel, random_seed
from mmpp.inference.preprocess import LocatedFace
from mmpp.inference.queue.crew import Crew
from mmpp.inference.queue.errors import AlreadyQueued, NoWorkers, QueueClosed, QueueFull
from mmpp.inference.queue.estimates import DEFAULT_JOB_S, WaitEstimate
from mmpp.inference.queue.front import FacePreparer
from mmpp.inference.queue.handle import JobHandle, Runner
from mmpp.inference.queue.jobs import Job, JobEvent, JobState, ShutdownReport, TerminalEvent, set_requests
from mmpp.inference.queue.line import WaitingLine
from mmpp.inference.queue.metrics import QueueMetrics
from mmpp.inference.queue.shutdown import shut_down
from mmpp.inference.queue.worker import EngineLike, GpuWorker
from mmpp.inference.styles import StyleCatalog
from mmpp.logs import log_event
from mmpp.settings import Settings

log = logging.getLogger(__name__)

# The metric label of each refusal `submit` counts.
REJECTED = {QueueClosed: "closed", NoWorkers: "no_workers", AlreadyQueued: "already_queued", QueueFull: "full"}


class GenerationQueue:
    """One fair queue feeding one worker per engine (one per GPU), or remote workers attached later:
    the bot's one front (`QueueFront`) in either case.

    Limits come from `settings`: `queue_capacity` (waiting jobs), `queue_job_deadline_s` (longest a
    job may wait before starting), `queue_batch_wait_s` (how long an idle worker gathers same-style
    jobs before starting), `max_batch_size`, `preview_every`.
    """

    def __init__(
        self,
        engine: EngineLike | Sequence[EngineLike] | None,
        settings: Settings,
        *,
        catalog: StyleCatalog | None = None,
        preparer: FacePreparer | None = None,
        metrics: QueueMetrics | None = None,
        initial_job_s: float = DEFAULT_JOB_S,
        stop_timeout_s: float = 10.0,
        name: str = "gpu",
    ) -> None:
        """`engine`: one engine, one per device, or None when every worker is attached later with
        `attach` (remote workers); then `catalog` says which styles may be submitted. `preparer`:
        where `prepare` prepares faces (default: the first engine; `EngineFront` without one)."""
        engines: list[EngineLike] = [] if engine is None else list(engine) if isinstance(engine, Sequence) \
            else [engine]
        if preparer is None and engines and hasattr(engines[0], "prepare"):
            preparer = engines[0]  # type: ignore[assignment]
        if catalog is None:
            if preparer is not None:
                catalog = preparer.catalog
            elif engines:
                catalog = engines[0].catalog
            else:
                raise ValueError("a queue without engines needs a catalog")
        self.catalog = catalog
        self.preparer = preparer
        self.engines = engines
        self.capacity = settings.queue_capacity
        self.deadline_s = settings.queue_job_deadline_s
        self.batch_wait_s = settings.queue_batch_wait_s
        # Capped by what each engine's warm-up measured as its best batch size (Engine.preferred_batch_size).
        preferred = [getattr(e, "preferred_batch_size", None) or settings.max_batch_size for e in engines]
        self.max_batch_size = min([settings.max_batch_size, *preferred])
        self.metrics = metrics or QueueMetrics()
        self.name = name
        self._estimate = WaitEstimate(initial_job_s)
        self._stop_timeout_s = stop_timeout_s
        workers: list[Runner] = [
            GpuWorker(e, self, preview_every=settings.preview_every, name=f"{name}{i}", metrics=self.metrics.draw)
            for i, e in enumerate(engines)
        ]
        self._line = WaitingLine(self.metrics, self._estimate, workers)
        self._crew = Crew(workers, self._line, name)
        self._work = asyncio.Event()
        self._idle = True
        self._stopping: asyncio.Future[ShutdownReport] | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers on the running loop. Jobs submitted earlier wait until then."""
        if self._crew.started:
            return
        self._line.loop = asyncio.get_running_loop()
        self._crew.start(self._line.loop)

    def attach(self, runner: Runner) -> None:
        """Add a worker while running (a remote worker that registered). When its `serve` returns
        without error it is detached again; its jobs are its own business to finish or hand back."""
        self._crew.attach(runner)

    def on_shutdown(self, close: Callable[[], Awaitable[None]]) -> None:
        """Run `close` once the workers have stopped (the Redis connection of remote workers)."""
        self._closers.append(close)

    @property
    def servers_waiting(self) -> int:
        """Servers (and DM members) with a job waiting: the fair rotation's length."""
        return self._line.scheduler.buckets

    @property
    def workers(self) -> int:
        """How many workers serve the queue now (estimates divide the work among them)."""
        return len(self._crew)

    async def __aenter__(self) -> GenerationQueue:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown(grace_s=0 if exc is not None else 30.0)

    async def shutdown(self, grace_s: float = 30.0) -> ShutdownReport:
        """Stop accepting, drop what waits, give the running batch `grace_s` to finish, then stop it.

        Safe to call more than once (a signal handler and an `async with` exit, say): every caller
        gets the same report."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._shutdown(grace_s))
        return await asyncio.shield(self._stopping)

    async def _shutdown(self, grace_s: float) -> ShutdownReport:
        self._crew.closing = True
        return await shut_down(
            self._line, self._crew.runners, self._crew.tasks.values(), self._closers, self._work,
            grace_s=grace_s, stop_timeout_s=self._stop_timeout_s, name=self.name,
        )

    # --- submitting ---------------------------------------------------------------------------

    def submit(
        self,
        face: PreparedFace,
        style: str,
        *,
        user_id: int,
        guild_id: int | None,
        seed: int | None = None,
        steps: int | None = None,
        lora_scale: float | None = None,
        background: str | None = None,
        framing: str | None = None,
        previews: bool = True,
        deadline: float | None = None,
        safety: SafetyLevel = "strict",
        unlinkable: bool = True,
        count: int = 1,
    ) -> JobHandle:
        """Queue one portrait (a set of `count` takes: one place, pictures with seeds derived from
        `seed`), or raise what `admit` raises, or `UnknownStyleError`, at once. `deadline` is a
        `time.monotonic()` instant; by default `queue_job_deadline_s` from now. Must be called on the
        queue's event loop."""
        try:
            self.admit(user_id)
        except UserFacingError as exc:
            self._reject(REJECTED[type(exc)], user_id, guild_id)
            raise
        self.catalog.get(style)  # an unknown style fails now, not minutes later

        if self._line.loop is None:
            self._line.loop = asyncio.get_running_loop()
        now = time.monotonic()
        request = GenerationRequest(
            face=face,
            style=style,
            seed=random_seed() if seed is None else seed,
            steps=steps,
            lora_scale=lora_scale,
            background=background,
            framing=framing,
            safety=safety,
            unlinkable=unlinkable,
        )
        job = Job(
            id=uuid.uuid4().hex[:12],
            user_id=user_id,
            guild_id=guild_id,
            request=request,
            submitted_at=now,
            deadline=now + self.deadline_s if deadline is None else deadline,
            previews=previews,
            more=set_requests(request, count),
        )
        self._line.add(job)  # its places first, so every job hears `Queued` before `Started`
        self._work.set()
        log_event(
            log, logging.INFO, "job queued",
            job=job.id, user=user_id, guild=guild_id, style=style, depth=len(self._line), pictures=count,
        )
        return JobHandle(job, self.cancel)

    def admit(self, user_id: int, *, preparing: int = 0) -> None:
        """Refuse, from memory alone and at once, what `submit` would refuse: a closing queue
        (`QueueClosed`), no worker to draw (`NoWorkers`), a member with a job already, waiting or
        running (`AlreadyQueued`), a full line (`QueueFull`). `preparing`: places the caller has
        promised to requests it is still preparing (download, face), counted as taken, so a burst
        admitted before any of it is queued still fits the line."""
        if not self.accepting:
            raise QueueClosed()
        if self._crew.started and not self._crew:
            raise NoWorkers()
        existing = self._line.of(user_id)
        if existing is not None:
            place = self._line.place(existing)
            waiting = existing.state is JobState.WAITING
            raise AlreadyQueued(
                existing.id,
                place if waiting else None,
                self.estimated_wait(place) if waiting else 0.0,
            )
        taken = len(self._line) + preparing
        if taken >= self.capacity:
            raise QueueFull(taken, self.estimated_wait(taken + 1))

    async def prepare(self, face: LocatedFace) -> PreparedFace:
        """The face as the engines draw from it (person cut out, at the drawing size), off the loop."""
        if self.preparer is None:
            raise RuntimeError("this queue has no engine or front to prepare faces")
        return await asyncio.to_thread(self.preparer.prepare, face)

    def _reject(self, reason: str, user_id: int, guild_id: int | None) -> None:
        self.metrics.rejected.labels(reason).inc()
        log_event(log, logging.INFO, "job refused", reason=reason, user=user_id, guild=guild_id)

    # --- asking and cancelling ----------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Jobs waiting (not counting the batch on the GPU)."""
        return len(self._line)

    @property
    def running(self) -> int:
        return self._crew.running

    @property
    def on_gpu(self) -> bool:
        """Whether a worker draws on a GPU (a local engine's device, or a remote worker's as it
        registered): what CANDIDATES' default follows."""
        return self._crew.on_gpu

    @property
    def accepting(self) -> bool:
        return not (self._crew.closing or self._crew.broken)

    @property
    def seconds_per_job(self) -> float:
        """The moving average of measured engine seconds per job (batches share the cost)."""
        return self._estimate.job_s

    def position(self, user_id: int) -> int | None:
        """The member's place in line (1 = next), 0 while their job runs, None if they have none."""
        job = self._line.of(user_id)
        if job is None:
            return None
        if job.state is JobState.RUNNING:
            return 0
        return self._line.place(job)

    def job_for(self, user_id: int) -> JobHandle | None:
        job = self._line.of(user_id)
        return None if job is None else JobHandle(job, self.cancel)

    def cancel_user(self, user_id: int) -> bool:
        job = self._line.of(user_id)
        return False if job is None else self.cancel(job)

    def cancel(self, job: Job) -> bool:
        """A waiting job leaves at once; a running one stops within one step. False if already over."""
        return self._line.cancel(job)

    def estimated_wait(self, position: int) -> float:
        """Seconds until the job at `position` starts: until the first worker frees up, plus the jobs
        ahead at the measured seconds per job, shared among the workers."""
        return self._line.estimated_wait(position)

    # --- the worker's side (JobSink) ----------------------------------------------------------

    async def next_batch(self) -> list[Job] | None:
        while not self._crew.closing:
            if not self._line:
                self._idle = True
                self._work.clear()
                await self._work.wait()
                continue
            if self._idle and self.batch_wait_s > 0:
                # The GPU was idle: give a burst of same-style submits a moment to arrive together.
                # A busy GPU needs no window; jobs pile up behind the running batch anyway.
                self._idle = False
                await asyncio.sleep(self.batch_wait_s)
                continue
            self._idle = False
            batch = self._line.take(self.max_batch_size)
            if batch:
                return batch
        return None

    def emit(self, job: Job, event: JobEvent) -> None:
        if job.state is not JobState.FINISHED:
            job.events.push(event)

    def finish(self, job: Job, event: TerminalEvent) -> None:
        self._line.finish(job, event)

    def hand_back(self, job: Job, *, lost: bool = True) -> bool:
        """A running job whose run was lost (its remote worker died, Redis lost it) goes back to the
        head of its server's line to run again; `lost=False`: it never reached a worker (another bot
        process had it). False, and nothing changes, if it cannot wait any more."""
        if self._crew.closing or not self._line.hand_back(job, lost=lost):
            return False
        self._work.set()
        if lost:
            log_event(log, logging.WARNING, "job handed back", job=job.id, user=job.user_id, attempt=job.attempt)
        return True

    def batch_measured(self, jobs: Sequence[Job], seconds: float) -> None:
        self._estimate.measured(len(jobs), seconds)
