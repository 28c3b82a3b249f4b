"""Stopping a queue: drop what waits, give the running batches their grace, stop what outlives it,
close the backends, and say in one report (and one log line) who was finished and who was dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from mmpp.inference.queue.handle import Runner
from mmpp.inference.queue.jobs import Done, DroppedJob, Failed, Job, JobState, ShutdownReport
from mmpp.inference.queue.line import WaitingLine
from mmpp.logs import log_event

log = logging.getLogger(__name__)

SHUTDOWN = Failed("shutdown")


async def shut_down(
    line: WaitingLine,
    runners: Sequence[Runner],
    tasks: Iterable[asyncio.Task[None]],
    closers: Iterable[Callable[[], Awaitable[None]]],
    work: asyncio.Event,
    *,
    grace_s: float,
    stop_timeout_s: float,
    name: str,
) -> ShutdownReport:
    """The queue already refuses new work. `tasks`: the runners' serving tasks; `work` is set so an
    idle runner asks for its next batch and hears there is none; `closers` run once the runners have
    stopped. A batch still running after `grace_s` is cancelled; one that ignores the cancel for
    `stop_timeout_s` more (a hung GPU) has its task cancelled and the report says not clean."""
    dropped = [_dropped(job, was_running=False) for job in line.drain(SHUTDOWN)]
    line.metrics.depth.set(0)
    running = [job for runner in runners for job in runner.running]
    work.set()
    clean = True
    serving = {t for t in tasks if not t.done()}
    if serving:
        _, pending = await asyncio.wait(serving, timeout=grace_s)
        if pending:
            for job in running:
                if job.state is JobState.RUNNING:
                    job.drop_reason = SHUTDOWN
                    job.request.cancel.set()
            # The engine checks the flag after every step; this only runs out on a hung GPU.
            _, pending = await asyncio.wait(pending, timeout=stop_timeout_s)
            if pending:
                clean = False
                for task in pending:
                    task.cancel()
                for job in running:
                    line.finish(job, SHUTDOWN)
    dropped += [_dropped(j, was_running=True) for j in running if j.terminal is SHUTDOWN]
    finished = sum(isinstance(j.terminal, Done) for j in running)
    for runner in runners:
        runner.close(wait=False)
    for close in closers:
        try:
            await close()
        except Exception:
            log.exception("closing a queue backend failed")
    report = ShutdownReport(finished=finished, dropped=tuple(dropped), clean=clean)
    log_event(
        log, logging.WARNING if dropped or not clean else logging.INFO, "queue stopped",
        queue=name, summary=report.summary(), dropped=",".join(d.job_id for d in dropped),
    )
    return report


def _dropped(job: Job, *, was_running: bool) -> DroppedJob:
    return DroppedJob(job.id, job.user_id, job.guild_id, job.style, was_running)
