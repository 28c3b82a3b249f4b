"""The bot's side of remote workers: find them in Redis, and give each one a slot in the fair queue.

A slot asks the queue for its next batch only when its worker has nothing to do, so the fair order
is decided at the last moment and Redis never holds a backlog. It hands the batch to its worker's
own arq queue, then reads each job's Redis Stream until the job ends.

When the worker's heartbeat lapses (kill -9, a lost machine) or Redis comes back without the batch
(a restart), the slot's unfinished jobs go back to the head of their server's line to run on
another worker, or, with no worker left or no time left, their members are told.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis, create_pool
from PIL import Image

from mmpp.errors import UserFacingError
from mmpp.inference.generation import GenerationResult
from mmpp.inference.queue.gpu_queue import GenerationQueue
from mmpp.inference.queue.jobs import Cancelled, Done, Failed, Job, JobState, Step, TerminalEvent, Timings
from mmpp.inference.queue.line import TIMED_OUT
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote.registry import Claim, Heartbeats, redis_now
from mmpp.inference.queue.remote.sealing import Forged, Seal
from mmpp.inference.queue.worker import ENGINE_ERROR
from mmpp.logs import log_event

log = logging.getLogger(__name__)

WATCH_EVERY_S = 0.5
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
TOO_LONG = Failed("timeout", {"stage": "drawing"})
# The bot's own deadline for a batch is the worker's BATCH_TIMEOUT_S plus this: the worker stops a
# batch and says so first; the bot stops waiting when even that word does not come (a hung worker
# whose heartbeat lives on, a worker that lost its connection).
FOLLOW_GRACE_S = p.HEARTBEAT_TTL_S
# arq scores a job with the enqueueing machine's clock and a worker picks it once the score is past
# on *its* clock: a worker an hour behind would wait an hour. Scored at the epoch, a batch is due on
# any worker at once; its expiry is a Redis TTL and the not-after time is on Redis's clock.
DUE_AT_ONCE = datetime.fromtimestamp(1, UTC)
# A worker sends a code and fields, never words: the bot words them as it words its own (an unknown
# code reads as the engine error). Fields are checked: short plain values only.
FIELD_MAX_CHARS = 200


class RedisUnavailable(UserFacingError):
    code = "redis_unavailable"


class RemoteBackend:
    """Publishes the bot's catalog, watches worker heartbeats, attaches one slot per live worker."""

    def __init__(
        self, queue: GenerationQueue, url: str, fingerprint: dict[str, Any], seal: Seal,
        *, batch_timeout_s: float = p.DEFAULT_BATCH_TIMEOUT_S,
    ) -> None:
        self.queue = queue
        self.seal = seal
        self.heartbeats = Heartbeats(seal, fingerprint)
        self.batch_timeout_s = batch_timeout_s
        self.url = url
        self.fingerprint = fingerprint
        self.redis_settings = p.redis_settings(url)
        self.pool: ArqRedis | None = None
        self.alive: dict[str, p.Heartbeat] = {}
        self.slots: dict[str, RemoteSlot] = {}
        self._task: asyncio.Task[None] | None = None
        self._unreachable = False
        # Who this bot process is, for worker claims shared with other bot processes.
        self.id = uuid.uuid4().hex[:12]
        self.bytes_sent = 0
        self.bytes_received = 0

    async def start(self) -> None:
        try:
            self.pool = await create_pool(
                self.redis_settings, job_serializer=p.serialize, job_deserializer=p.deserialize
            )
            await self._scan()
        except p.REDIS_ERRORS as exc:
            if self.pool is not None:
                await self.pool.aclose()
            raise RedisUnavailable(
                f"Cannot reach Redis at {p.display_url(self.url)} ({exc.__class__.__name__}). "
                "Start it, or fix REDIS_URL."
            ) from None
        self._task = asyncio.create_task(self._watch(), name="mmpp-remote-watch")
        log_event(log, logging.INFO, "remote workers", redis=p.display_url(self.url), workers=len(self.alive))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.pool is not None:
            await self.pool.aclose()

    def is_alive(self, worker_id: str) -> bool:
        return worker_id in self.alive

    def others_alive(self, worker_id: str) -> bool:
        return any(w != worker_id and not self.alive[w].stopping for w in self.alive)

    def takes_work(self, worker_id: str) -> bool:
        """Alive and not stopping: a stopping worker finishes its batch but gets no other."""
        beat = self.alive.get(worker_id)
        return beat is not None and not beat.stopping

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            try:
                await self._scan()
                if self._unreachable:
                    log_event(log, logging.INFO, "redis reachable again")
                self._unreachable = False
            except p.REDIS_ERRORS:
                if not self._unreachable:
                    log_event(log, logging.WARNING, "redis unreachable, retrying")
                self._unreachable = True

    async def _scan(self) -> None:
        assert self.pool is not None
        # Published again and again: a Redis that restarted empty gets it back within a scan.
        await self.pool.set(p.CATALOG_KEY, self.seal.sign("catalog", p.Catalog(self.fingerprint).to_wire()))
        # Now, read before the heartbeats: a pause of this process between the two reads (a busy
        # event loop) must not make every heartbeat look stale.
        now = await redis_now(self.pool)
        keys = [key async for key in self.pool.scan_iter(match=p.WORKER_PREFIX + "*", count=100)]
        values = await self.pool.mget(keys) if keys else []
        beats = {
            (k.decode() if isinstance(k, bytes) else k).removeprefix(p.WORKER_PREFIX): v
            for k, v in zip(keys, values, strict=True) if v is not None
        }
        alive = self.heartbeats.read(beats, now)
        for worker_id, beat in alive.items():
            if beat.stopping and (slot := self.slots.get(worker_id)) is not None:
                slot.worker_stopping()
        for worker_id in set(self.alive) - set(alive):
            log_event(log, logging.WARNING, "worker gone", worker=worker_id)
            if (slot := self.slots.get(worker_id)) is not None:
                slot.worker_gone()
        self.alive = alive
        for worker_id in alive:
            if worker_id not in self.slots and not alive[worker_id].stopping:
                log_event(log, logging.INFO, "worker joined", worker=worker_id, device=alive[worker_id].device)
                slot = RemoteSlot(self, worker_id)
                self.slots[worker_id] = slot
                self.queue.attach(slot)


class RemoteSlot:
    """One remote worker's place in the queue: the `Runner` the queue sees for it."""

    def __init__(self, backend: RemoteBackend, worker_id: str) -> None:
        self.backend = backend
        self.worker_id = worker_id
        self.name = f"remote:{worker_id}"
        self.running: list[Job] = []
        self.running_since: float | None = None
        self._gone = asyncio.Event()

    @property
    def device(self) -> str:
        """The device its worker said it draws on when it registered."""
        beat = self.backend.alive.get(self.worker_id)
        return beat.device if beat is not None else "cpu"

    def worker_gone(self) -> None:
        self._gone.set()

    def worker_stopping(self) -> None:
        # An idle slot leaves at once; a busy one follows its batch to the end first (`serve`).
        if not self.running:
            self._gone.set()

    def close(self, *, wait: bool) -> None:
        pass  # nothing of its own to release; its worker keeps running for other bots

    async def serve(self) -> None:
        queue = self.backend.queue
        try:
            while self.backend.takes_work(self.worker_id):
                # Waiting for work must not outlive the worker: an idle slot of a dead worker would
                # count as room and hold the queue's view of who can draw.
                asking = asyncio.ensure_future(queue.next_batch())
                gone = asyncio.ensure_future(self._gone.wait())
                await asyncio.wait({asking, gone}, return_when=asyncio.FIRST_COMPLETED)
                gone.cancel()
                if not asking.done():
                    asking.cancel()
                    return
                batch = asking.result()
                if batch is None:
                    return
                self.running = batch
                self.running_since = time.monotonic()
                try:
                    await self._run(batch)
                except Exception:
                    # A bug on our side of the wire: fail the batch loudly, keep serving.
                    log.exception("remote slot failed a batch", extra={"fields": {"worker": self.worker_id}})
                    for job in batch:
                        queue.finish(job, Failed(ENGINE_ERROR))
                finally:
                    self.running = []
                    self.running_since = None
        finally:
            self.backend.slots.pop(self.worker_id, None)

    @property
    def pool(self) -> ArqRedis:
        assert self.backend.pool is not None
        return self.backend.pool

    async def _run(self, batch: list[Job]) -> None:
        if not self.backend.is_alive(self.worker_id):
            await self._lost(batch, LOST)
            return
        claim = Claim(self.pool, self.backend.seal, self.backend.id, self.worker_id)
        try:
            claimed = await claim.take()
        except p.REDIS_ERRORS:
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
            except p.REDIS_ERRORS:
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
            await self.pool.set(p.batch_marker(batch_id), b"1", ex=p.EVENT_TTL_S)
            await self.pool.enqueue_job(
                p.BATCH_FUNCTION, payload, _job_id=batch_id, _queue_name=p.worker_queue(self.worker_id),
                _expires=max(1.0, left_s), _defer_until=DUE_AT_ONCE,
            )
        except p.REDIS_ERRORS:
            await self._lost(batch, REDIS_LOST)
            return
        self.backend.bytes_sent += len(p.serialize(payload))
        log_event(log, logging.INFO, "batch sent", worker=self.worker_id, batch=batch_id,
                  jobs=",".join(j.id for j in batch), style=batch[0].style)
        await self._follow(batch, batch_id, claim)

    def _tag(self, job: Job) -> str:
        return self.backend.seal.tag(job.id, job.attempt)

    async def _follow(self, batch: list[Job], batch_id: str, claim: Claim) -> None:
        pending: dict[bytes, Job] = {p.events_key(self._tag(j)).encode(): j for j in batch}
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
                except p.REDIS_ERRORS:
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
            except p.REDIS_ERRORS:
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
        queue = self.backend.queue
        if event.kind == "step":
            queue.emit(job, Step(event.step, event.steps, _image(event.preview) if event.preview else None))
            return None
        if event.kind == "done":
            # A take the worker's safety check refused comes without pixels ("filtered").
            if len(event.takes) > job.cost:
                return Failed("result_lost")
            seconds = event.seconds
            results = []
            for index, take in enumerate(event.takes):
                image = None
                if not take.filtered:
                    sealed = await self.pool.getdel(p.result_key(self._tag(job), index))
                    if sealed is None:
                        return Failed("result_lost")
                    self.backend.bytes_received += len(sealed)
                    try:
                        image = await asyncio.to_thread(
                            self.backend.seal.open_result, p.take_name(job.id, index), job.attempt, sealed
                        )
                    except Forged as exc:
                        log_event(log, logging.WARNING, "result refused", job=job.id, why=str(exc))
                        return Failed("result_refused")
                results.append(GenerationResult(
                    image=image, seed=take.seed, style=job.style, seconds=seconds, flagged=image is None,
                    linkable=take.linkable, guard=take.guard, may_link=take.may_link,
                ))
            now = time.monotonic()
            started_at = job.started_at if job.started_at is not None else started
            queue.batch_measured([job], seconds / max(1, job.batch_size))
            timings = Timings(
                waited_s=started_at - job.submitted_at, ran_s=now - started_at, engine_s=seconds,
                batch_size=job.batch_size,
            )
            return Done(results[0], timings, tuple(results[1:]))
        if event.kind == "failed":
            code = event.code or ENGINE_ERROR
            if code == "batch_timeout":
                return TOO_LONG
            if code == "expired":
                return TIMED_OUT
            return Failed(code, _plain(event.fields))
        if event.kind == "cancelled":
            return Cancelled()
        return None  # "started", or something newer than this bot: nothing to show

    async def _reconnected(self, batch_id: str) -> bool:
        """After a dropped connection: wait for Redis, then say whether it still knows the batch.
        A Redis that restarted empty lost the batch's streams; its jobs must be run again."""
        deadline = time.monotonic() + p.HEARTBEAT_TTL_S * 2
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            try:
                return bool(await self.pool.exists(p.batch_marker(batch_id)))
            except p.REDIS_ERRORS:
                continue
        return False

    async def _too_long(self, jobs: list[Job], batch_id: str) -> None:
        """The bot's deadline passed without an end from the worker: its members are told, the
        worker is asked to stop, and the slot and the members' quota are free again."""
        for job in jobs:
            await self._cleanup(job, stop=True)
            self.backend.queue.finish(job, TOO_LONG)
        try:
            await self.pool.delete(p.arq_job_key(batch_id), p.batch_marker(batch_id))
            await self.pool.zrem(p.worker_queue(self.worker_id), batch_id)
        except p.REDIS_ERRORS:
            pass  # they carry TTLs
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
            try:
                # The payload (the faces) must not wait in Redis for a worker that is gone.
                await self.pool.delete(p.arq_job_key(batch_id), p.batch_marker(batch_id))
                await self.pool.zrem(p.worker_queue(self.worker_id), batch_id)
            except p.REDIS_ERRORS:
                pass  # they carry TTLs
        log_event(log, logging.WARNING, "batch lost", worker=self.worker_id, batch=batch_id,
                  jobs=",".join(j.id for j in jobs), why=failed.fields.get("cause"))

    async def _cancel(self, job: Job) -> None:
        """The flag the worker reads after each step, signed for this job and attempt alone."""
        await self.pool.set(p.cancel_key(self._tag(job)), self.backend.seal.cancel_flag(job.id, job.attempt),
                            ex=p.EVENT_TTL_S)

    async def _cleanup(self, job: Job, batch_id: str | None = None, *, stop: bool = False) -> None:
        """Nothing of a finished job stays in Redis (and nothing of its batch once `batch_id` is
        given); `stop` also tells a worker that may still be drawing it (one cut off from us, not
        dead) to give up."""
        tag = self._tag(job)
        try:
            keys = [p.events_key(tag), *(p.result_key(tag, take) for take in range(job.cost))]
            if stop:
                await self._cancel(job)
            else:
                keys.append(p.cancel_key(tag))
            if batch_id is not None:
                keys.append(p.batch_marker(batch_id))
            await self.pool.delete(*keys)
        except p.REDIS_ERRORS:
            pass  # all of these carry TTLs


def _plain(fields: object) -> dict[str, Any]:
    """A worker's failure fields, kept only where each is a plain short value a sentence can show."""
    if not isinstance(fields, dict):
        return {}
    return {
        str(name): value for name, value in fields.items()
        if isinstance(value, int | float | bool) or (isinstance(value, str) and len(value) <= FIELD_MAX_CHARS)
        or (isinstance(value, list) and all(isinstance(v, str) and len(v) <= FIELD_MAX_CHARS for v in value))
    }


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data), formats=["PNG"])
    image.load()
    return image
