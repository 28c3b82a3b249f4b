"""The line itself: who waits where, their places and deadlines, taking a batch off the front, and
how every job ends (the one place a job is finished, its metrics counted and its end logged).

Runs on the event loop's thread only, like the rest of the queue's bookkeeping; `GenerationQueue`
decides when a batch is taken and who may join, this module keeps the jobs' state true.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from mmpp.inference.queue.estimates import WaitEstimate
from mmpp.inference.queue.handle import Runner
from mmpp.inference.queue.jobs import Cancelled, Done, Failed, Job, JobState, Queued, Started, TerminalEvent
from mmpp.inference.queue.metrics import QueueMetrics
from mmpp.inference.queue.scheduler import FairScheduler
from mmpp.logs import log_event

log = logging.getLogger(__name__)

# A `timeout` while the job waited in line; a remote worker's run that went on too long is `drawing`.
TIMED_OUT = Failed("timeout", {"stage": "waiting"})


class WaitingLine:
    """The jobs of one queue from joining to their end: the fair order (`FairScheduler`), one job per
    member, each waiting job's place (`Queued` when it changes) and its deadline."""

    def __init__(self, metrics: QueueMetrics, estimate: WaitEstimate, runners: Sequence[Runner]) -> None:
        """`runners`: the queue's own list, read live: a place is worth less while more runners draw."""
        self.metrics = metrics
        self.estimate = estimate
        self.scheduler: FairScheduler[Job] = FairScheduler()
        # Set when the queue starts or first takes a job; deadlines and place updates are its timers.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._runners = runners
        self._by_user: dict[int, Job] = {}
        self._refresh_pending = False

    def __len__(self) -> int:
        """Jobs waiting (not counting those running)."""
        return len(self.scheduler)

    def of(self, user_id: int) -> Job | None:
        """The member's job, waiting or running."""
        return self._by_user.get(user_id)

    def estimated_wait(self, position: int) -> float:
        return self.estimate.wait(position, self._runners)

    def place(self, job: Job) -> int:
        """The waiting job's place in line (1 = next), brought up to date first."""
        self._flush_positions()
        return job.position

    def add(self, job: Job) -> None:
        """A new job at the back of its server's line, timed out at its deadline if still waiting."""
        assert self.loop is not None
        job.expiry = self.loop.call_later(max(0.0, job.deadline - job.submitted_at), self._expire, job)
        self.scheduler.add(job)
        self._by_user[job.user_id] = job
        self.metrics.depth.set(len(self.scheduler))
        # Positions before waking the worker, so every job hears `Queued` before `Started`.
        self._schedule_refresh()

    def take(self, max_size: int) -> list[Job]:
        """The next batch, started: its jobs told `Started`; jobs past their deadline are finished
        instead. Empty when every picked job had run out of time."""
        self._flush_positions()
        now = time.monotonic()
        batch = []
        for job in self.scheduler.pick(max_size):
            if job.deadline <= now:
                self.finish(job, TIMED_OUT)
            else:
                batch.append(job)
        self.metrics.depth.set(len(self.scheduler))
        self._schedule_refresh()
        if not batch:
            return batch
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

    def drain(self, event: TerminalEvent) -> list[Job]:
        """Finish every waiting job with `event`; the jobs, in the order they would have run. The
        depth gauge is the caller's to reset (a queue that broke leaves it as it was)."""
        jobs = self.scheduler.drain()
        for job in jobs:
            self.finish(job, event)
        return jobs

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

    def finish(self, job: Job, event: TerminalEvent) -> None:
        if job.state is JobState.FINISHED:
            return  # e.g. a cancel announced mid-batch, then the batch's own result
        if isinstance(event, Cancelled) and job.drop_reason is not None:
            event = job.drop_reason
        was = job.state
        if was is JobState.WAITING and self.scheduler.remove(job):
            self.metrics.depth.set(len(self.scheduler))
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

    def hand_back(self, job: Job, *, lost: bool) -> bool:
        """The running job back at the head of its server's line (see `GenerationQueue.hand_back`);
        False, and nothing changes, if it cannot wait any more."""
        now = time.monotonic()
        if job.state is not JobState.RUNNING or job.deadline <= now or self.loop is None:
            return False
        job.state = JobState.WAITING
        job.attempt += 1 if lost else 0
        job.position = 0
        self.metrics.running.dec()
        self.scheduler.add_front(job)
        job.expiry = self.loop.call_later(job.deadline - now, self._expire, job)
        self.metrics.depth.set(len(self.scheduler))
        self._schedule_refresh()
        return True

    # --- places and deadlines -----------------------------------------------------------------

    def _schedule_refresh(self) -> None:
        # Debounced: a burst of submits or cancels costs one O(n) pass, not one per change.
        if not self._refresh_pending and self.loop is not None:
            self._refresh_pending = True
            self.loop.call_soon(self._flush_positions)

    def _flush_positions(self) -> None:
        if not self._refresh_pending:
            return
        self._refresh_pending = False
        base = self.estimated_wait(1)
        per_place = self.estimate.per_place(self._runners)
        for position, job in enumerate(self.scheduler.order(), start=1):
            if job.position != position:
                job.position = position
                job.events.push(Queued(position, base + (position - 1) * per_place))

    def _expire(self, job: Job) -> None:
        if job.state is JobState.WAITING:
            self.finish(job, TIMED_OUT)


def _outcome(event: TerminalEvent) -> str:
    if isinstance(event, Done):
        return "filtered" if event.result.flagged else "done"
    if isinstance(event, Cancelled):
        return "cancelled"
    if event.code in ("timeout", "shutdown"):
        return event.code
    return "failed"
