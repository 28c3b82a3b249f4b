"""What the queue hands out and takes in: a `JobHandle` for the bot (events, outcome, cancel) and
the `Runner` protocol every batch taker (a local GPU, a remote worker's slot) follows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from mmpp.inference.queue.jobs import TERMINAL, Job, JobEvent, JobState, TerminalEvent


class Runner(Protocol):
    """One thing that takes batches from the queue: a local GPU (`GpuWorker`) or a remote worker's
    slot (`mmpp.inference.queue.remote`). It asks `next_batch` only when it has room for a batch, so the
    fair order is decided at the last moment."""

    name: str
    running: list[Job]
    running_since: float | None

    async def serve(self) -> None: ...

    def close(self, *, wait: bool) -> None: ...


class JobHandle:
    """What `submit` returns: the job's events, its outcome and a way to cancel it."""

    def __init__(self, job: Job, cancel: Callable[[Job], bool]) -> None:
        self._job = job
        self._cancel = cancel

    @property
    def id(self) -> str:
        return self._job.id

    @property
    def user_id(self) -> int:
        return self._job.user_id

    @property
    def guild_id(self) -> int | None:
        return self._job.guild_id

    @property
    def style(self) -> str:
        return self._job.style

    @property
    def seed(self) -> int:
        return self._job.request.seed

    @property
    def state(self) -> JobState:
        return self._job.state

    @property
    def done(self) -> bool:
        return self._job.state is JobState.FINISHED

    async def events(self) -> AsyncIterator[JobEvent]:
        """Every event for this job, ending with (and including) `Done`, `Failed` or `Cancelled`.
        Meant for one consumer; pending `Queued` updates collapse to the newest."""
        while True:
            if not self._job.events and self._job.terminal is not None:
                return  # already read to the end (or by another consumer)
            event = await self._job.events.get()
            yield event
            if isinstance(event, TERMINAL):
                return

    async def outcome(self) -> TerminalEvent:
        """Wait for the terminal event without consuming `events()`."""
        await self._job.finished.wait()
        assert self._job.terminal is not None
        return self._job.terminal

    def cancel(self) -> bool:
        """A waiting job leaves at once; a running one stops within one step. False if already over."""
        return self._cancel(self._job)

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} user={self.user_id} guild={self.guild_id} {self.style} {self.state.value}>"
