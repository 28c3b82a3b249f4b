"""How long a member will wait: a moving average of measured engine seconds per job, and the time
until the first runner frees up. Pure bookkeeping on the event loop's thread."""

from __future__ import annotations

import time
from collections.abc import Sequence

from mmpp.inference.queue.handle import Runner

# Before anything has been measured: SDXL at 1024 px, ~30 steps with ControlNet on a mid-range GPU.
DEFAULT_JOB_S = 15.0
# Weight of the newest batch in the moving average: recent enough to follow a style switch or a
# warmer GPU, smooth enough that one odd batch doesn't swing everybody's estimate.
EMA_ALPHA = 0.3


class WaitEstimate:
    def __init__(self, initial_job_s: float = DEFAULT_JOB_S) -> None:
        self.job_s = initial_job_s
        self._measured = False

    def measured(self, jobs: int, seconds: float) -> None:
        per_job = seconds / max(1, jobs)
        # The seed is only a guess: the first measurement replaces it outright.
        self.job_s = per_job if not self._measured else EMA_ALPHA * per_job + (1 - EMA_ALPHA) * self.job_s
        self._measured = True

    def per_place(self, runners: Sequence[Runner]) -> float:
        """Seconds one place in line is worth: a job's time, shared among the runners."""
        return self.job_s / max(1, len(runners))

    def wait(self, position: int, runners: Sequence[Runner]) -> float:
        """Seconds until the job at `position` starts: until the first runner frees up, plus the jobs
        ahead at the measured seconds per job, shared among the runners."""
        return self.first_free(runners) + max(0, position - 1) * self.per_place(runners)

    def first_free(self, runners: Sequence[Runner]) -> float:
        now = time.monotonic()
        soonest: float | None = None
        for runner in runners:
            since = runner.running_since
            left = 0.0
            if since is not None and runner.running:
                left = max(0.0, len(runner.running) * self.job_s - (now - since))
            soonest = left if soonest is None else min(soonest, left)
        return soonest or 0.0
