"""The GPU worker: takes batches from the queue and runs them on the engine in its own thread.

`Engine.generate` blocks for seconds, so it runs on a single-thread executor (one per GPU: the
pipeline is not thread-safe, and one thread keeps CUDA work in order) while the event loop keeps
serving Discord. Step callbacks fire on that thread and are marshalled back to the loop with
`call_soon_threadsafe`; job state is only ever touched on the loop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from PIL import Image

from mmpp.errors import CodedError, UserFacingError
from mmpp.inference import likeness
from mmpp.inference.generation import GenerationCancelled, GenerationRequest, GenerationResult, StepProgress
from mmpp.inference.queue import unlinkable
from mmpp.inference.queue.jobs import Cancelled, Done, Failed, Job, JobEvent, Step, TerminalEvent, Timings
from mmpp.inference.queue.metrics import DrawMetrics
from mmpp.inference.styles import StyleCatalog
from mmpp.logs import log_event
from mmpp.memory import HeapTrimmer

log = logging.getLogger(__name__)

ENGINE_ERROR = "engine_error"
OUT_OF_MEMORY = "out_of_memory"


class EngineLike(Protocol):
    """What the queue needs from an engine; tests wrap the real `Engine` to inject faults."""

    @property
    def catalog(self) -> StyleCatalog: ...

    def generate(
        self, requests: Sequence[GenerationRequest], on_step: Callable[[StepProgress], None] | None = None
    ) -> list[GenerationResult]: ...


class JobSink(Protocol):
    """The queue side of the worker: where batches come from and where outcomes go."""

    async def next_batch(self) -> list[Job] | None: ...  # None: stop serving

    def emit(self, job: Job, event: JobEvent) -> None: ...

    def finish(self, job: Job, event: TerminalEvent) -> None: ...  # idempotent

    def batch_measured(self, jobs: Sequence[Job], seconds: float) -> None: ...

    # The most pictures one engine call may draw; a set larger than that is drawn in several calls.
    @property
    def max_batch_size(self) -> int: ...


# torch is imported where a worker draws, not at the top: the queue (and so a bot that draws nothing)
# imports this module too, and never loads torch. Where an engine runs, torch is loaded already.


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    # CUDA raises its own type; MPS and older builds raise a RuntimeError that only says so in words.
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class GpuWorker:
    def __init__(
        self, engine: EngineLike, sink: JobSink, *, preview_every: int, name: str = "gpu0",
        metrics: DrawMetrics,
    ) -> None:
        self.engine = engine
        self._metrics = metrics
        self.name = name
        # Where it draws ("cuda:0", "cpu"): the queue's `on_gpu` reads it.
        self.device = str(getattr(engine, "device", "cpu"))
        self._sink = sink
        self._preview_every = preview_every
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mmpp-{name}")
        self.running: list[Job] = []
        self.running_since: float | None = None
        self._trimmer = HeapTrimmer()

    async def serve(self) -> None:
        """Run batches until the queue says stop. One bad batch never ends the loop."""
        while (batch := await self._sink.next_batch()) is not None:
            try:
                await self.run_batch(batch)
            except Exception:
                # A bug in our own bookkeeping, not the engine (that is handled in `_attempt`):
                # fail the batch loudly and keep serving the others.
                log.exception("worker failed a batch", extra={"fields": {"worker": self.name}})
                for job in batch:
                    self._sink.finish(job, Failed(ENGINE_ERROR))
            # Not in a `finally`: if the task itself is cancelled mid-batch, the queue still needs
            # to see which jobs were running so it can tell their members.
            self.running = []
            self.running_since = None
            if self._trimmer.due():
                # On the engine's own thread, between batches: the event loop never waits on it.
                await asyncio.get_running_loop().run_in_executor(self._executor, self._trimmer.trim)

    async def run_batch(self, jobs: list[Job]) -> None:
        self.running = jobs
        self.running_since = time.monotonic()
        log_event(
            log, logging.INFO, "batch started",
            worker=self.name, jobs=",".join(j.id for j in jobs), style=jobs[0].style, batch=len(jobs),
            pictures=sum(j.cost for j in jobs), users=",".join(str(j.user_id) for j in jobs),
        )
        await self._attempt(jobs)

    async def _attempt(self, jobs: list[Job]) -> None:
        """Every picture of the batch, in engine calls of at most the queue's batch size (a set larger
        than that is split here; its member still gets one set), then the guard, then each job's end."""
        loop = asyncio.get_running_loop()
        pairs = [(job, request) for job in jobs for request in job.requests]
        cap = max(1, getattr(self._sink, "max_batch_size", None) or len(pairs))
        drawn: dict[int, GenerationResult] = {}  # id(request) -> its picture
        over: set[int] = set()  # id(job) of jobs already finished (failed, cancelled)
        started = time.perf_counter()
        for first in range(0, len(pairs), cap):
            for job, _ in pairs[first:first + cap]:
                if id(job) not in over and job.request.cancel.is_set():
                    self._end([job], Cancelled(), over)  # cancelled between two calls of its set
            chunk = [(job, r) for job, r in pairs[first:first + cap] if id(job) not in over]
            if chunk:
                results = await self._draw(chunk, loop, over, retry_oom=True)
                drawn.update((id(r), result) for (_, r), result in zip(chunk, results, strict=True) if result)
        live = [job for job in jobs if id(job) not in over]
        if not live:
            return
        seconds = time.perf_counter() - started
        self._sink.batch_measured(jobs, seconds)
        self._metrics.batch_drawn(len(drawn), seconds, self.device)
        pairs = [(job, r) for job, r in pairs if id(job) not in over]
        results = [drawn[id(r)] for _, r in pairs]
        verdicts = await loop.run_in_executor(self._executor, self._judge, pairs, results)
        by_job: dict[int, list[GenerationResult]] = {id(job): [] for job in live}
        to_redraw = []
        for (job, request), result, verdict in zip(pairs, results, verdicts, strict=True):
            if verdict.linkable:
                to_redraw.append((job, request, len(by_job[id(job)]), result, verdict))
            by_job[id(job)].append(verdict.settle(result))
        waiting = {id(job) for job, *_ in to_redraw}
        for job in live:
            if id(job) not in waiting:  # done before the redraws, which its batch mates need not wait for
                self._done(job, by_job[id(job)], len(jobs))
        for index, (job, request, k, result, verdict) in enumerate(to_redraw):
            base_scale = self.engine.catalog.get(job.style).definition.ip_adapter_scale
            self._metrics.redraws.inc()
            by_job[id(job)][k] = await loop.run_in_executor(
                self._executor, unlinkable.redraw, self.engine.generate, request, result, verdict, base_scale,
                self._step_callback([(job, request)], loop),
            )
            if all(other is not job for other, *_ in to_redraw[index + 1:]):
                self._done(job, by_job[id(job)], len(jobs))

    async def _draw(
        self, chunk: list[tuple[Job, GenerationRequest]], loop: asyncio.AbstractEventLoop, over: set[int], *,
        retry_oom: bool,
    ) -> list[GenerationResult | None]:
        """One engine call; None for each picture whose job it finished instead (added to `over`)."""
        jobs = list({id(job): job for job, _ in chunk}.values())
        out_of_memory = False
        try:
            return list(await loop.run_in_executor(
                self._executor, self.engine.generate, [r for _, r in chunk], self._step_callback(chunk, loop)
            ))
        except GenerationCancelled:
            self._end(jobs, Cancelled(), over)
            return [None] * len(chunk)
        except Exception as exc:
            if not is_out_of_memory(exc):
                self._fail(jobs, exc)
                over.update(id(job) for job in jobs)
                return [None] * len(chunk)
            out_of_memory = True
        assert out_of_memory
        # Outside the except block so the traceback (which pins the batch's tensors) is gone
        # before we try to give the memory back.
        free_memory()
        log_event(
            log, logging.WARNING, "out of memory",
            worker=self.name, jobs=",".join(j.id for j in jobs), batch=len(chunk), retry=retry_oom,
        )
        if not retry_oom:
            self._end(jobs, Failed(OUT_OF_MEMORY), over)
            return [None] * len(chunk)
        # One picture at a time, once: a smaller call (or freed memory) may fit where the batch did not.
        results: list[GenerationResult | None] = []
        for job, request in chunk:
            if id(job) in over:
                results.append(None)
            elif request.cancel.is_set():
                self._end([job], Cancelled(), over)
                results.append(None)
            else:
                results += await self._draw([(job, request)], loop, over, retry_oom=False)
        return results

    def _end(self, jobs: list[Job], event: TerminalEvent, over: set[int]) -> None:
        for job in jobs:
            self._sink.finish(job, event)
            over.add(id(job))

    def _done(self, job: Job, results: list[GenerationResult], batch_size: int) -> None:
        if any(result.cancelled for result in results):
            self._sink.finish(job, Cancelled())
            return
        self._metrics.refusals.inc(sum(1 for result in results if result.flagged))
        now = time.monotonic()
        started_at = job.started_at if job.started_at is not None else now
        timings = Timings(
            waited_s=started_at - job.submitted_at, ran_s=now - started_at,
            engine_s=sum(result.seconds for result in results), batch_size=batch_size,
        )
        self._sink.finish(job, Done(results[0], timings, tuple(results[1:])))

    def _judge(
        self, pairs: list[tuple[Job, GenerationRequest]], results: list[GenerationResult]
    ) -> list[unlinkable.Verdict]:
        """The unlinkable guard's verdicts, one per picture (a set's takes are judged each), on the
        engine's thread: one face detection for a faceless portrait, two descriptors (0.2 to 0.5 s
        on a busy 2-core CPU) for one with a face."""
        verdicts = []
        # The takes of a set share one selfie (one PreparedFace): described once, not once per take.
        selfies: dict[int, likeness.Descriptor | None] = {}

        def selfie_of(request: GenerationRequest) -> likeness.Descriptor | None:
            if id(request.face) not in selfies:
                selfies[id(request.face)] = unlinkable.describe_selfie(request)
            return selfies[id(request.face)]

        for (_, request), result in zip(pairs, results, strict=True):
            try:
                verdicts.append(unlinkable.judge(request, result, selfie_of))
            except Exception:
                # The portrait is drawn; a broken measurement must not cost the member their answer,
                # nor pass as a measurement: it may be linkable, and the member is told so.
                log.error("likeness check failed", exc_info=True, extra={"fields": {"worker": self.name}})
                verdicts.append(unlinkable.unmeasured(request))
        return verdicts

    def _fail(self, jobs: list[Job], exc: Exception) -> None:
        if isinstance(exc, UserFacingError):
            # The code and fields go on, never words: the bot words them (an error without a
            # wording of its own there, an operator's, reads as the engine error; its text is logged).
            failed = Failed(exc.code, exc.fields if isinstance(exc, CodedError) else {})
            log_event(log, logging.WARNING, "batch refused", worker=self.name, code=exc.code, batch=len(jobs),
                      error=str(exc))
        else:
            failed = Failed(ENGINE_ERROR)
            log.error(
                "engine error", exc_info=exc,
                extra={"fields": {"worker": self.name, "jobs": ",".join(j.id for j in jobs)}},
            )
        for job in jobs:
            self._sink.finish(job, failed)

    def _step_callback(
        self, chunk: list[tuple[Job, GenerationRequest]], loop: asyncio.AbstractEventLoop
    ) -> Callable[[StepProgress], None]:
        every = self._preview_every
        announced: set[int] = set()
        # A job's progress and preview come from its first picture in this call.
        firsts: dict[int, int] = {}
        for index, (job, _) in enumerate(chunk):
            firsts.setdefault(id(job), index)

        def on_step(progress: StepProgress) -> None:  # runs on the GPU thread
            updates: list[tuple[Job, JobEvent]] = []
            for index, (job, _) in enumerate(chunk):
                if firsts[id(job)] != index:
                    continue
                if not progress.active[index]:
                    # Tell the member now rather than when batch mates finish: "stops within one step".
                    if index not in announced:
                        announced.add(index)
                        updates.append((job, Cancelled()))
                    continue
                preview = None
                if job.previews and progress.step % every == 0:
                    preview = self._preview(progress, index)
                updates.append((job, Step(progress.step, progress.total, preview)))
            try:
                loop.call_soon_threadsafe(self._deliver, updates)
            except RuntimeError:
                pass  # the loop is closed: nobody is left to tell

        return on_step

    def _preview(self, progress: StepProgress, index: int) -> Image.Image | None:
        try:
            return progress.preview(index)
        except Exception:
            # A preview is a nicety; losing one must not cost the member the portrait.
            log.warning("preview failed", exc_info=True)
            return None

    def _deliver(self, updates: list[tuple[Job, JobEvent]]) -> None:
        for job, event in updates:
            if isinstance(event, Cancelled):
                self._sink.finish(job, event)
            else:
                self._sink.emit(job, event)

    def close(self, *, wait: bool) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)
