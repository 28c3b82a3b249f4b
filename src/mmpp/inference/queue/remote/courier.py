"""One remote worker's batches, carried there and back (`Courier`; its slot in `dispatch` decides when).

The courier claims the worker (other bot processes share it), hands it the sealed batch on its own
arq queue, then reads each job's Redis Stream until the job ends (`events` says what each event
means to the queue). Nothing of a finished job stays in Redis.

When the worker's heartbeat lapses (kill -9, a lost machine) or Redis comes back without the batch
(a restart), the unfinished jobs go back to the head of their server's line to run on another
worker, or, with no worker left or no time left, their members are told.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Protocol

from arq.connections import ArqRedis
from PIL import Image

from mmpp.inference.queue.gpu_queue import GenerationQueue
from mmpp.inference.queue.jobs import Failed, Job, JobState, TerminalEvent
from mmpp.inference.queue.remote import events
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote import transport as t
from mmpp.inference.queue.remote.registry import Claim, redis_now
from mmpp.inference.queue.remote.sealing import Forged, Seal
from mmpp.logs import log_event

log = logging.getLogger(__name__)

# How long one stream read blocks; also how soon a /cancel on the bot reaches Redis.
READ_BLOCK_MS = 20
# A job whose run was lost this many times is not tried again (something about it kills workers).
MAX_ATTEMPTS = 2
CLAIM_RETRY_S = 0.05
# A claim is signed again this often while its batch runs, well inside its TTL.
CLAIM_RENEW_S = 2.5
# Why a running job was lost (the `worker_lost` code's `cause`): its worker, or Redis.
LOST = Failed("worker_lost", {"cause": "worker"})
REDIS_LOST = Failed("worker_lost", {"cause": "redis"})
# The bot's own deadline for a batch is the worker's BATCH_TIMEOUT_S plus this: the worker stops a
# batch and says so first; the bot stops waiting when even that word does not come (a hung worker
# whose heartbeat lives on, a worker that lost its connection).
FOLLOW_GRACE_S = t.HEARTBEAT_TTL_S
# arq scores a job with the enqueueing machine's clock and a worker picks it once the score is past
# on *its* clock: a worker an hour behind would wait an hour. Scored at the epoch, a batch is due on
# any worker at once; its expiry is a Redis TTL and the not-after time is on Redis's clock.
DUE_AT_ONCE = datetime.fromtimestamp(1, UTC)


class Backend(Protocol):
    """What a courier reads of the backend whose slot it serves (`dispatch.RemoteBackend`, which
    imports this module), and the bytes it counts there."""

    queue: GenerationQueue
    seal: Seal
    id: str  # this bot process, for its claims on workers
    batch_timeout_s: float
    pool: ArqRedis | None
    bytes_sent: int
    bytes_received: int

    def is_alive(self, worker_id: str) -> bool: ...

    def others_alive(self, worker_id: str) -> bool: ...


class Courier:
    """Runs its slot's batches, one at a time, on the slot's worker."""

    def __init__(self, backend: Backend, worker_id: str) -> None:
        self.backend = backend
        self.worker_id = worker_id

    @property
    def pool(self) -> ArqRedis:
        assert self.backend.pool is not None
        return self.backend.pool

    async def run(self, batch: list[Job]) -> None:
        """Claims the worker, sends it `batch` and follows each job to its end, or hands the jobs back
        for another worker when this one is taken or lost."""
        if not self.backend.is_alive(self.worker_id):
            await self._lost(batch, LOST)
            return
        claim = Claim(self.pool, self.backend.seal, self.backend.id, self.worker_id)
        try:
            claimed = await claim.take()
        except t.REDIS_ERRORS:
            claimed = False
        if not claimed:
            # Another bot process (another shard range) is using this worker: the jobs keep their
            # place for the next free worker, here or elsewhere.
            for job in batch:
                if not self.backend.queue.hand_back(job, lost=False):
                    self.backend.queue.finish(job, REDIS_LOST)
            await asyncio.sleep(CLAIM_RETRY_S)
            return
        try:
            await self._dispatch(batch, claim)
        finally:
            try:
                await claim.release()
            except t.REDIS_ERRORS:
                pass  # it expires on its own

    async def _dispatch(self, batch: list[Job], claim: Claim) -> None:
        batch_id = uuid.uuid4().hex
        left_s = min(j.deadline for j in batch) - time.monotonic()
        try:
            # The worker is another machine with its own clock: the time it must not start past
            # is on Redis's clock, which both read.
            not_after = await redis_now(self.pool) + left_s
            sent = p.Batch(batch_id, secrets.token_hex(16), not_after, tuple(
                p.RemoteJob(j.id, j.attempt, j.request, j.previews, tuple(r.seed for r in j.more)) for j in batch
            ))
            payload = await asyncio.to_thread(lambda: self.backend.seal.seal_payload(sent.to_wire()))
            await self.pool.set(t.batch_marker(batch_id), b"1", ex=t.EVENT_TTL_S)
            await self.pool.enqueue_job(
                t.BATCH_FUNCTION, payload, _job_id=batch_id, _queue_name=t.worker_queue(self.worker_id),
                _expires=max(1.0, left_s), _defer_until=DUE_AT_ONCE,
            )
        except t.REDIS_ERRORS:
            await self._lost(batch, REDIS_LOST)
            return
        self.backend.bytes_sent += len(t.serialize(payload))
        log_event(log, logging.INFO, "batch sent", worker=self.worker_id, batch=batch_id,
                  jobs=",".join(j.id for j in batch), style=batch[0].style)
        await self._follow(batch, batch_id, claim)

    def _tag(self, job: Job) -> str:
        return self.backend.seal.tag(job.id, job.attempt)

    async def _follow(self, batch: list[Job], batch_id: str, claim: Claim) -> None:
        pending: dict[bytes, Job] = {t.events_key(self._tag(j)).encode(): j for j in batch}
        last: dict[bytes, bytes] = dict.fromkeys(pending, b"0-0")
        flagged: set[str] = set()
        started = time.monotonic()
        renewed = time.monotonic()
        # The bot's own deadline, on its own monotonic clock: no clock of another machine decides
        # how long a member waits.
        until = started + self.backend.batch_timeout_s + FOLLOW_GRACE_S
        while pending:
            if time.monotonic() > until:
                await self._too_long(list(pending.values()), batch_id)
                return
            if time.monotonic() - renewed > CLAIM_RENEW_S:
                renewed = time.monotonic()
                try:
                    await claim.renew()
                except t.REDIS_ERRORS:
                    pass  # handled below, where the stream read fails too
            if not self.backend.is_alive(self.worker_id):
                await self._lost(list(pending.values()), LOST, batch_id)
                return
            try:
                for job in pending.values():
                    if job.request.cancel.is_set() and job.id not in flagged:
                        await self._cancel(job)
                        flagged.add(job.id)
                replies = await self.pool.xread(dict(last), block=READ_BLOCK_MS, count=100)
            except t.REDIS_ERRORS:
                if not await self._reconnected(batch_id):
                    await self._lost(list(pending.values()), REDIS_LOST, batch_id)
                    return
                continue
            for key, entries in replies or []:
                job = pending.get(key)
                if job is None:
                    continue
                for entry_id, fields in entries:
                    last[key] = entry_id
                    end = await self._event(job, fields, started)
                    if end is not None:
                        pending.pop(key, None)
                        last.pop(key, None)
                        # Redis forgets the job before its member hears the end of it.
                        await self._cleanup(job, batch_id if not pending else None)
                        self.backend.queue.finish(job, end)
                        break

    async def _event(self, job: Job, fields: dict[bytes, bytes], started: float) -> TerminalEvent | None:
        """Pass one stream entry on to the job's consumer; the terminal event when it ends the job."""
        self.backend.bytes_received += sum(len(k) + len(v) for k, v in fields.items())
        try:
            event = p.Event.from_wire(self.backend.seal.open_event(job.id, job.attempt, fields))
            return await self._opened_event(job, event, started)
        except (Forged, KeyError, ValueError, TypeError, OSError, SyntaxError) as exc:
            # Not from this job's worker, or malformed: skipped, and the job goes on (an end that
            # never verifies ends at the bot's own deadline).
            log_event(log, logging.WARNING, "event skipped", job=job.id, error=type(exc).__name__)
            return None

    async def _opened_event(self, job: Job, event: p.Event, started: float) -> TerminalEvent | None:
        if event.kind == "step":
            self.backend.queue.emit(job, events.step(event))
            return None
        if event.kind != "done":
            return events.ended(event)
        # A take the worker's safety check refused comes without pixels ("filtered").
        if len(event.takes) > job.cost:
            return Failed("result_lost")
        images: list[Image.Image | None] = []
        for index, take in enumerate(event.takes):
            image = None
            if not take.filtered:
                sealed = await self.pool.getdel(t.result_key(self._tag(job), index))
                if sealed is None:
                    return Failed("result_lost")
                self.backend.bytes_received += len(sealed)
                try:
                    image = await asyncio.to_thread(
                        self.backend.seal.open_result, t.take_name(job.id, index), job.attempt, sealed
                    )
                except Forged as exc:
                    log_event(log, logging.WARNING, "result refused", job=job.id, why=str(exc))
                    return Failed("result_refused")
            images.append(image)
        self.backend.queue.batch_measured([job], event.seconds / max(1, job.batch_size))
        return events.done(job, event, images, started)


    async def _reconnected(self, batch_id: str) -> bool:
        """After a dropped connection: wait for Redis, then say whether it still knows the batch.
        A Redis that restarted empty lost the batch's streams; its jobs must be run again."""
        deadline = time.monotonic() + t.HEARTBEAT_TTL_S * 2
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            try:
                return bool(await self.pool.exists(t.batch_marker(batch_id)))
            except t.REDIS_ERRORS:
                continue
        return False

    async def _too_long(self, jobs: list[Job], batch_id: str) -> None:
        """The bot's deadline passed without an end from the worker: its members are told, the
        worker is asked to stop, and the slot and the members' quota are free again."""
        for job in jobs:
            await self._cleanup(job, stop=True)
            self.backend.queue.finish(job, events.TOO_LONG)
        await self._forget_batch(batch_id)
        log_event(log, logging.WARNING, "batch past the bot's deadline", worker=self.worker_id, batch=batch_id,
                  jobs=",".join(j.id for j in jobs))

    async def _lost(self, jobs: list[Job], failed: Failed, batch_id: str | None = None) -> None:
        queue = self.backend.queue
        for job in jobs:
            if job.state is not JobState.RUNNING:
                continue
            await self._cleanup(job, stop=True)
            again = job.attempt + 1 < MAX_ATTEMPTS and self.backend.others_alive(self.worker_id)
            if not (again and queue.hand_back(job)):
                queue.finish(job, failed)
        if batch_id is not None:
            await self._forget_batch(batch_id)
        log_event(log, logging.WARNING, "batch lost", worker=self.worker_id, batch=batch_id,
                  jobs=",".join(j.id for j in jobs), why=failed.fields.get("cause"))

    async def _forget_batch(self, batch_id: str) -> None:
        """The payload (the faces) must not wait in Redis for a worker that is gone or past its time."""
        try:
            await self.pool.delete(t.arq_job_key(batch_id), t.batch_marker(batch_id))
            await self.pool.zrem(t.worker_queue(self.worker_id), batch_id)
        except t.REDIS_ERRORS:
            pass  # they carry TTLs

    async def _cancel(self, job: Job) -> None:
        """The flag the worker reads after each step, signed for this job and attempt alone."""
        await self.pool.set(t.cancel_key(self._tag(job)), self.backend.seal.cancel_flag(job.id, job.attempt),
                            ex=t.EVENT_TTL_S)

    async def _cleanup(self, job: Job, batch_id: str | None = None, *, stop: bool = False) -> None:
        """Nothing of a finished job stays in Redis (and nothing of its batch once `batch_id` is
        given); `stop` also tells a worker that may still be drawing it (one cut off from us, not
        dead) to give up."""
        tag = self._tag(job)
        try:
            keys = [t.events_key(tag), *(t.result_key(tag, take) for take in range(job.cost))]
            if stop:
                await self._cancel(job)
            else:
                keys.append(t.cancel_key(tag))
            if batch_id is not None:
                keys.append(t.batch_marker(batch_id))
            await self.pool.delete(*keys)
        except t.REDIS_ERRORS:
            pass  # all of these carry TTLs
