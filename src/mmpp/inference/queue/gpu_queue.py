"""The in-process GPU queue: bounded, fair across servers, one job per member, batched by style.

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
from mmpp.inference.queue.errors import AlreadyQueued, NoWorkers, QueueClosed, QueueFull
from mmpp.inference.queue.estimates import DEFAULT_JOB_S, WaitEstimate
from mmpp.inference.queue.front import FacePreparer
from mmpp.inference.queue.handle import JobHandle, Runner
from mmpp.inference.queue.jobs import (
    Cancelled,
    Done,
    DroppedJob,
    Failed,
    Job,
    JobEvent,
    JobState,
    Queued,
    ShutdownReport,
    Started,
    TerminalEvent,
    set_requests,
)
from mmpp.inference.queue.metrics import QueueMetrics
from mmpp.inference.queue.scheduler import FairScheduler
from mmpp.inference.queue.worker import EngineLike, GpuWorker
from mmpp.inference.styles import StyleCatalog
from mmpp.logs import log_event
from mmpp.settings import Settings

log = logging.getLogger(__name__)

SHUTDOWN = Failed("shutdown")
STOPPED = Failed("queue_stopped")
# A `timeout` while the job waited in line; a remote worker's run that went on too long is `drawing`.
TIMED_OUT = Failed("timeout", {"stage": "waiting"})
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
        self._scheduler: FairScheduler[Job] = FairScheduler()
        self._by_user: dict[int, Job] = {}
        self._workers: list[Runner] = [
            GpuWorker(e, self, preview_every=settings.preview_every, name=f"{name}{i}", metrics=self.metrics.draw)
            for i, e in enumerate(engines)
        ]
        self._tasks: dict[Runner, asyncio.Task[None]] = {}
        self._started = False
        self._work = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refresh_pending = False
        self._idle = True
        self._closing = False
        self._broken = False
        self._stopping: asyncio.Future[ShutdownReport] | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers on the running loop. Jobs submitted earlier wait until then."""
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        for runner in self._workers:
            self._serve(runner)

    def attach(self, runner: Runner) -> None:
        """Add a worker while running (a remote worker that registered). When its `serve` returns
        without error it is detached again; its jobs are its own business to finish or hand back."""
        if self._closing:
            runner.close(wait=False)
            return
        self._workers.append(runner)
        if self._started:
            self._serve(runner)

    def on_shutdown(self, close: Callable[[], Awaitable[None]]) -> None:
        """Run `close` once the workers have stopped (the Redis connection of remote workers)."""
        self._closers.append(close)

    def _serve(self, runner: Runner) -> None:
        assert self._loop is not None
        task = self._loop.create_task(runner.serve(), name=f"mmpp-queue-{runner.name}")
        self._tasks[runner] = task
        task.add_done_callback(lambda t: self._worker_stopped(runner, t))

    @property
    def servers_waiting(self) -> int:
        """Servers (and DM members) with a job waiting: the fair rotation's length."""
        return self._scheduler.buckets

    @property
    def workers(self) -> int:
        """How many workers serve the queue now (estimates divide the work among them)."""
        return len(self._workers)

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
        self._closing = True
        dropped: list[DroppedJob] = []
        for job in self._scheduler.drain():
            dropped.append(_dropped(job, was_running=False))
            self.finish(job, SHUTDOWN)
        self.metrics.depth.set(0)
        running = [job for runner in self._workers for job in runner.running]
        self._work.set()
        clean = True
        tasks = {t for t in self._tasks.values() if not t.done()}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            if pending:
                for job in running:
                    if job.state is JobState.RUNNING:
                        job.drop_reason = SHUTDOWN
                        job.request.cancel.set()
                # The engine checks the flag after every step; this only runs out on a hung GPU.
                _, pending = await asyncio.wait(pending, timeout=self._stop_timeout_s)
                if pending:
                    clean = False
                    for task in pending:
                        task.cancel()
                    for job in running:
                        self.finish(job, SHUTDOWN)
        dropped += [_dropped(j, was_running=True) for j in running if j.terminal is SHUTDOWN]
        finished = sum(isinstance(j.terminal, Done) for j in running)
        for runner in self._workers:
            runner.close(wait=False)
        for close in self._closers:
            try:
                await close()
            except Exception:
                log.exception("closing a queue backend failed")
        report = ShutdownReport(finished=finished, dropped=tuple(dropped), clean=clean)
        log_event(
            log, logging.WARNING if dropped or not clean else logging.INFO, "queue stopped",
            queue=self.name, summary=report.summary(), dropped=",".join(d.job_id for d in dropped),
        )
        return report

    def _worker_stopped(self, runner: Runner, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if self._closing and error is None:
            return
        if error is None and not task.cancelled() and not isinstance(runner, GpuWorker):
            # A remote worker went away; it has handed its jobs back already.
            self._tasks.pop(runner, None)
            if runner in self._workers:
                self._workers.remove(runner)
            if not self._workers:
                # Nobody left to draw: waiting out the deadline would be silence.
                for job in self._scheduler.drain():
                    self.finish(job, Failed(NoWorkers.code))
                self.metrics.depth.set(0)
            return
        # Never silently: say so, fail everyone still waiting, and refuse new work.
        self._broken = True
        if error is None:  # cancelled from outside, e.g. the loop ended without `shutdown()`
            log_event(log, logging.WARNING, "GPU worker cancelled without shutdown", queue=self.name,
                      worker=runner.name)
        else:
            log.critical("GPU worker stopped", exc_info=error, extra={"fields": {"queue": self.name,
                                                                                 "worker": runner.name}})
        for job in [*self._scheduler.drain(), *(j for r in self._workers for j in r.running)]:
            self.finish(job, STOPPED)

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

        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
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
        job.expiry = loop.call_later(max(0.0, job.deadline - now), self._expire, job)
        self._scheduler.add(job)
        self._by_user[user_id] = job
        self.metrics.depth.set(len(self._scheduler))
        # Positions before waking the worker, so every job hears `Queued` before `Started`.
        self._schedule_refresh()
        self._work.set()
        log_event(
            log, logging.INFO, "job queued",
            job=job.id, user=user_id, guild=guild_id, style=style, depth=len(self._scheduler), pictures=count,
        )
        return JobHandle(job, self.cancel)

    def admit(self, user_id: int, *, preparing: int = 0) -> None:
        """Refuse, from memory alone and at once, what `submit` would refuse: a closing queue
        (`QueueClosed`), no worker to draw (`NoWorkers`), a member with a job already, waiting or
        running (`AlreadyQueued`), a full line (`QueueFull`). `preparing`: places the caller has
        promised to requests it is still preparing (download, face), counted as taken, so a burst
        admitted before any of it is queued still fits the line."""
        if self._closing or self._broken:
            raise QueueClosed()
        if self._started and not self._workers:
            raise NoWorkers()
        existing = self._by_user.get(user_id)
        if existing is not None:
            self._flush_positions()
            waiting = existing.state is JobState.WAITING
            raise AlreadyQueued(
                existing.id,
                existing.position if waiting else None,
                self.estimated_wait(existing.position) if waiting else 0.0,
            )
        taken = len(self._scheduler) + preparing
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
        return len(self._scheduler)

    @property
    def running(self) -> int:
        return sum(j.state is JobState.RUNNING for r in self._workers for j in r.running)

    @property
    def on_gpu(self) -> bool:
        """Whether a worker draws on a GPU (a local engine's device, or a remote worker's as it
        registered): what CANDIDATES' default follows."""
        return any(_is_gpu(getattr(runner, "device", "cpu")) for runner in self._workers)

    @property
    def accepting(self) -> bool:
        return not (self._closing or self._broken)

    @property
    def seconds_per_job(self) -> float:
        """The moving average of measured engine seconds per job (batches share the cost)."""
        return self._estimate.job_s

    def position(self, user_id: int) -> int | None:
        """The member's place in line (1 = next), 0 while their job runs, None if they have none."""
        job = self._by_user.get(user_id)
        if job is None:
            return None
        if job.state is JobState.RUNNING:
            return 0
        self._flush_positions()
        return job.position

    def job_for(self, user_id: int) -> JobHandle | None:
        job = self._by_user.get(user_id)
        return None if job is None else JobHandle(job, self.cancel)

    def cancel_user(self, user_id: int) -> bool:
        job = self._by_user.get(user_id)
        return False if job is None else self.cancel(job)

    def cancel(self, job: Job) -> bool:
        if job.state is JobState.WAITING:
            self.finish(job, Cancelled())
            return True
        if job.state is JobState.RUNNING:
            # The worker reports `Cancelled` when the engine next looks at the flag (within one step).
            job.request.cancel.set()
            log_event(log, logging.INFO, "job cancelling", job=job.id, user=job.user_id)
            return True
        return False

    def estimated_wait(self, position: int) -> float:
        """Seconds until the job at `position` starts: until the first worker frees up, plus the jobs
        ahead at the measured seconds per job, shared among the workers."""
        return self._estimate.wait(position, self._workers)

    # --- the worker's side (JobSink) ----------------------------------------------------------

    async def next_batch(self) -> list[Job] | None:
        while not self._closing:
            if not self._scheduler:
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
            self._flush_positions()
            now = time.monotonic()
            batch = []
            for job in self._scheduler.pick(self.max_batch_size):
                if job.deadline <= now:
                    self.finish(job, self._timed_out(job, now))
                else:
                    batch.append(job)
            self.metrics.depth.set(len(self._scheduler))
            self._schedule_refresh()
            if not batch:
                continue
            for job in batch:
                job.state = JobState.RUNNING
                job.started_at = now
                job.batch_size = len(batch)
                if job.expiry is not None:
                    job.expiry.cancel()
                self.metrics.wait_seconds.observe(now - job.submitted_at)
                job.events.push(Started(len(batch), now - job.submitted_at))
            self.metrics.running.inc(len(batch))
            self.metrics.batch_size.observe(sum(job.cost for job in batch))
            return batch
        return None

    def emit(self, job: Job, event: JobEvent) -> None:
        if job.state is not JobState.FINISHED:
            job.events.push(event)

    def finish(self, job: Job, event: TerminalEvent) -> None:
        if job.state is JobState.FINISHED:
            return  # e.g. a cancel announced mid-batch, then the batch's own result
        if isinstance(event, Cancelled) and job.drop_reason is not None:
            event = job.drop_reason
        was = job.state
        if was is JobState.WAITING and self._scheduler.remove(job):
            self.metrics.depth.set(len(self._scheduler))
            self._schedule_refresh()
        job.state = JobState.FINISHED
        job.terminal = event
        if job.expiry is not None:
            job.expiry.cancel()
            job.expiry = None
        if self._by_user.get(job.user_id) is job:
            del self._by_user[job.user_id]
        job.events.push(event)
        job.finished.set()

        now = time.monotonic()
        if was is JobState.RUNNING:
            self.metrics.running.dec()
            if job.started_at is not None:
                self.metrics.run_seconds.observe(now - job.started_at)
        outcome = _outcome(event)
        self.metrics.jobs.labels(outcome).inc()
        fields: dict[str, object] = {
            "job": job.id, "user": job.user_id, "guild": job.guild_id, "style": job.style,
            "outcome": outcome, "seconds": round(now - job.submitted_at, 3),
        }
        if isinstance(event, Failed):
            fields["code"] = event.code
        if isinstance(event, Done):
            fields["batch"] = event.timings.batch_size
        log_event(log, logging.WARNING if outcome == "failed" else logging.INFO, "job finished", **fields)

    def hand_back(self, job: Job, *, lost: bool = True) -> bool:
        """A running job whose run was lost (its remote worker died, Redis lost it) goes back to the
        head of its server's line to run again; `lost=False`: it never reached a worker (another bot
        process had it). False, and nothing changes, if it cannot wait any more."""
        now = time.monotonic()
        if job.state is not JobState.RUNNING or self._closing or job.deadline <= now or self._loop is None:
            return False
        job.state = JobState.WAITING
        job.attempt += 1 if lost else 0
        job.position = 0
        self.metrics.running.dec()
        self._scheduler.add_front(job)
        job.expiry = self._loop.call_later(job.deadline - now, self._expire, job)
        self.metrics.depth.set(len(self._scheduler))
        self._schedule_refresh()
        self._work.set()
        if lost:
            log_event(log, logging.WARNING, "job handed back", job=job.id, user=job.user_id, attempt=job.attempt)
        return True

    def batch_measured(self, jobs: Sequence[Job], seconds: float) -> None:
        self._estimate.measured(len(jobs), seconds)

    # --- positions and deadlines --------------------------------------------------------------

    def _schedule_refresh(self) -> None:
        # Debounced: a burst of submits or cancels costs one O(n) pass, not one per change.
        if not self._refresh_pending and self._loop is not None:
            self._refresh_pending = True
            self._loop.call_soon(self._flush_positions)

    def _flush_positions(self) -> None:
        if not self._refresh_pending:
            return
        self._refresh_pending = False
        base = self.estimated_wait(1)
        per_place = self._estimate.per_place(self._workers)
        for position, job in enumerate(self._scheduler.order(), start=1):
            if job.position != position:
                job.position = position
                job.events.push(Queued(position, base + (position - 1) * per_place))

    def _expire(self, job: Job) -> None:
        if job.state is JobState.WAITING:
            self.finish(job, self._timed_out(job, time.monotonic()))

    def _timed_out(self, job: Job, now: float) -> Failed:
        return TIMED_OUT


def _is_gpu(device: object) -> bool:
    return str(device).split(":")[0] not in ("cpu", "?", "")


def _outcome(event: TerminalEvent) -> str:
    if isinstance(event, Done):
        return "filtered" if event.result.flagged else "done"
    if isinstance(event, Cancelled):
        return "cancelled"
    if event.code in ("timeout", "shutdown"):
        return event.code
    return "failed"


def _dropped(job: Job, *, was_running: bool) -> DroppedJob:
    return DroppedJob(job.id, job.user_id, job.guild_id, job.style, was_running)
