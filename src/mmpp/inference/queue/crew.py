"""The runners that serve one queue: local GPU workers from the start, remote workers' slots as they
register, each served by its own task; and what a runner's end means. A remote worker that leaves is
let go (and the line fails at once when nobody is left to draw); any other end breaks the queue,
loudly, failing every job still waiting or running."""

from __future__ import annotations

import asyncio
import logging

from mmpp.inference.queue.errors import NoWorkers
from mmpp.inference.queue.handle import Runner
from mmpp.inference.queue.jobs import Failed, JobState
from mmpp.inference.queue.line import WaitingLine
from mmpp.inference.queue.worker import GpuWorker
from mmpp.logs import log_event

log = logging.getLogger(__name__)

STOPPED = Failed("queue_stopped")


class Crew:
    """Who draws for the queue now, the task serving each, and the queue's two ends of service:
    `closing` (it shuts down) and `broken` (a runner died)."""

    def __init__(self, runners: list[Runner], line: WaitingLine, name: str) -> None:
        """`runners`: the local workers, a list the line reads too (estimates divide among them)."""
        self.runners = runners
        self.tasks: dict[Runner, asyncio.Task[None]] = {}
        self.started = False
        # Set once the queue shuts down: a runner that ends now is meant to, and none may join.
        self.closing = False
        # A runner ended that should not have: the queue refuses new work from then on.
        self.broken = False
        self._line = line
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self.runners)

    @property
    def running(self) -> int:
        """Jobs being drawn now, by every runner."""
        return sum(j.state is JobState.RUNNING for r in self.runners for j in r.running)

    @property
    def on_gpu(self) -> bool:
        """Whether a runner draws on a GPU (a local engine's device, or a remote worker's as it registered)."""
        return any(_is_gpu(getattr(runner, "device", "cpu")) for runner in self.runners)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.started = True
        self._loop = loop
        for runner in self.runners:
            self._serve(runner)

    def attach(self, runner: Runner) -> None:
        """See `GenerationQueue.attach`."""
        if self.closing:
            runner.close(wait=False)
            return
        self.runners.append(runner)
        if self.started:
            self._serve(runner)

    def _serve(self, runner: Runner) -> None:
        assert self._loop is not None
        task = self._loop.create_task(runner.serve(), name=f"mmpp-queue-{runner.name}")
        self.tasks[runner] = task
        task.add_done_callback(lambda t: self._stopped(runner, t))

    def _stopped(self, runner: Runner, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if self.closing and error is None:
            return
        if error is None and not task.cancelled() and not isinstance(runner, GpuWorker):
            # A remote worker went away; it has handed its jobs back already.
            self.tasks.pop(runner, None)
            if runner in self.runners:
                self.runners.remove(runner)
            if not self.runners:
                # Nobody left to draw: waiting out the deadline would be silence.
                self._line.drain(Failed(NoWorkers.code))
                self._line.metrics.depth.set(0)
            return
        # Never silently: say so, fail everyone still waiting, and refuse new work.
        self.broken = True
        if error is None:  # cancelled from outside, e.g. the loop ended without `shutdown()`
            log_event(log, logging.WARNING, "GPU worker cancelled without shutdown", queue=self._name,
                      worker=runner.name)
        else:
            log.critical("GPU worker stopped", exc_info=error, extra={"fields": {"queue": self._name,
                                                                                 "worker": runner.name}})
        self._line.drain(STOPPED)
        for job in [j for r in self.runners for j in r.running]:
            self._line.finish(job, STOPPED)


def _is_gpu(device: object) -> bool:
    return str(device).split(":")[0] not in ("cpu", "?", "")
