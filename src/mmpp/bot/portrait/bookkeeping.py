"""Log writes that must never undo what a member already has.

The job's log row is bookkeeping: when the database is locked (another process holds SQLite's
write lock), restarting or unreachable, a write that fails must not stop a running job nor turn a
delivered portrait into an error. `LogWrites` tries each write once in line; a failure is logged
and the write is retried in the background until it lands (first outcome still wins, see
`mmpp.bot.db.job_log`). What is still unwritten when the bot stops stays open for the next start,
whose recovery looks at the reply before it says anything (`mmpp.bot.app.recovery`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError

from mmpp.bot.db import Repository
from mmpp.bot.db.job_log import Outcome
from mmpp.logs import log_event

log = logging.getLogger(__name__)

# What a database that is locked, restarting or unreachable raises.
DATABASE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)
# Seconds between tries of a write that failed: soon at first, then once a minute.
RETRY_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class LogWrites:
    """The bot's writes to a job's log row once the job is queued; never raise for the database."""

    def __init__(
        self, repo: Repository, retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self.repo = repo
        # Counted once per job, here where its outcome is final (the metrics' `mmpp_bot_outcomes_total`).
        self.on_outcome = on_outcome
        self.retry_delays_s = retry_delays_s
        self._retries: set[asyncio.Task[None]] = set()
        # Rows whose outcome is known but not yet written: the member has their answer, so a stop
        # does not tell them anything; the row stays open for the next start (see `mmpp.bot.app.recovery`).
        self.answered: set[int] = set()
        # Rows of jobs whose reply is still being written: a graceful stop waits for them.
        self._replying: set[int] = set()

    @contextmanager
    def replying(self, log_id: int) -> Iterator[None]:
        """Around following a queued job to its answer and last write."""
        self._replying.add(log_id)
        try:
            yield
        finally:
            self._replying.discard(log_id)

    @property
    def busy(self) -> bool:
        """Whether a reply is still being written."""
        return bool(self._replying)

    async def started(self, log_id: int) -> None:
        await self._write(log_id, "started", lambda: self.repo.log_started(log_id))

    async def finished(self, log_id: int, outcome: Outcome, reason: str | None = None) -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        if not await self._write(log_id, outcome, lambda: self.repo.log_finished(log_id, outcome, reason)):
            self.answered.add(log_id)

    async def _write(self, log_id: int, what: str, write: Callable[[], Awaitable[object]]) -> bool:
        """True when the write landed now; otherwise it is retried in the background."""
        try:
            await write()
            return True
        except DATABASE_ERRORS as exc:
            log_event(log, logging.WARNING, "log write failed, retrying later", log_id=log_id, write=what,
                      error=type(exc).__name__)
        task = asyncio.create_task(self._retry(log_id, what, write), name=f"mmpp-log-{log_id}-{what}")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)
        return False

    async def _retry(self, log_id: int, what: str, write: Callable[[], Awaitable[object]]) -> None:
        attempt = 0
        while True:
            await asyncio.sleep(self.retry_delays_s[min(attempt, len(self.retry_delays_s) - 1)])
            attempt += 1
            try:
                await write()
            except DATABASE_ERRORS as exc:
                log_event(log, logging.WARNING, "log write failed again", log_id=log_id, write=what,
                          attempt=attempt, error=type(exc).__name__)
                continue
            log_event(log, logging.INFO, "log write landed", log_id=log_id, write=what, attempt=attempt)
            if what != "started":
                self.answered.discard(log_id)
            return

    async def drain(self, timeout_s: float) -> None:
        """Give the writes still failing until `timeout_s` to land, then stop retrying them."""
        if not self._retries:
            return
        _, left = await asyncio.wait(set(self._retries), timeout=timeout_s)
        for task in left:
            task.cancel()
        if left:
            log_event(log, logging.WARNING, "log writes left for the next start", left=len(left))
            await asyncio.wait(left)
