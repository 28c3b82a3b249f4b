"""The bot's side of remote workers: find them in Redis, and give each one a slot in the fair queue.

A slot joins when its worker's heartbeat first verifies and leaves when the heartbeat lapses or the
worker says it is stopping (a busy slot first follows its batch to the end). A slot asks the queue
for its next batch only when its worker has nothing to do, so the fair order is decided at the last
moment and Redis never holds a backlog; its `courier.Courier` carries the batch there and back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from arq.connections import ArqRedis, create_pool

from mmpp.errors import UserFacingError
from mmpp.inference.queue.gpu_queue import GenerationQueue
from mmpp.inference.queue.jobs import Failed, Job
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote import transport as t
from mmpp.inference.queue.remote.courier import Courier
from mmpp.inference.queue.remote.registry import Heartbeats, redis_now
from mmpp.inference.queue.remote.sealing import Seal
from mmpp.inference.queue.worker import ENGINE_ERROR
from mmpp.logs import log_event

log = logging.getLogger(__name__)

WATCH_EVERY_S = 0.5


class RedisUnavailable(UserFacingError):
    code = "redis_unavailable"


class RemoteBackend:
    """Publishes the bot's catalog, watches worker heartbeats, attaches one slot per live worker."""

    def __init__(
        self, queue: GenerationQueue, url: str, fingerprint: dict[str, Any], seal: Seal,
        *, batch_timeout_s: float = t.DEFAULT_BATCH_TIMEOUT_S,
    ) -> None:
        self.queue = queue
        self.seal = seal
        self.heartbeats = Heartbeats(seal, fingerprint)
        self.batch_timeout_s = batch_timeout_s
        self.url = url
        self.fingerprint = fingerprint
        self.redis_settings = t.redis_settings(url)
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
                self.redis_settings, job_serializer=t.serialize, job_deserializer=t.deserialize
            )
            await self._scan()
        except t.REDIS_ERRORS as exc:
            if self.pool is not None:
                await self.pool.aclose()
            raise RedisUnavailable(
                f"Cannot reach Redis at {t.display_url(self.url)} ({exc.__class__.__name__}). "
                "Start it, or fix REDIS_URL."
            ) from None
        self._task = asyncio.create_task(self._watch(), name="mmpp-remote-watch")
        log_event(log, logging.INFO, "remote workers", redis=t.display_url(self.url), workers=len(self.alive))

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
            except t.REDIS_ERRORS:
                if not self._unreachable:
                    log_event(log, logging.WARNING, "redis unreachable, retrying")
                self._unreachable = True

    async def _scan(self) -> None:
        assert self.pool is not None
        # Published again and again: a Redis that restarted empty gets it back within a scan.
        await self.pool.set(t.CATALOG_KEY, self.seal.sign("catalog", p.Catalog(self.fingerprint).to_wire()))
        # Now, read before the heartbeats: a pause of this process between the two reads (a busy
        # event loop) must not make every heartbeat look stale.
        now = await redis_now(self.pool)
        keys = [key async for key in self.pool.scan_iter(match=t.WORKER_PREFIX + "*", count=100)]
        values = await self.pool.mget(keys) if keys else []
        beats = {
            (k.decode() if isinstance(k, bytes) else k).removeprefix(t.WORKER_PREFIX): v
            for k, v in zip(keys, values, strict=True) if v is not None
        }
        alive = self.heartbeats.read(beats, now)
        for worker_id in set(self.alive) - set(alive):
            log_event(log, logging.WARNING, "worker gone", worker=worker_id)
            if (slot := self.slots.get(worker_id)) is not None:
                slot.worker_gone()
        self.alive = alive
        for worker_id, beat in alive.items():
            slot = self.slots.get(worker_id)
            if beat.stopping:
                if slot is not None:
                    slot.worker_stopping()
            elif slot is not None:
                # Back before its slot left (a Redis restart while the slot settled its batch): the
                # slot stays. Leaving and joining again would leave the queue with nobody to draw
                # for a scan, and with one worker that refuses members and fails those waiting.
                slot.worker_back()
            else:
                log_event(log, logging.INFO, "worker joined", worker=worker_id, device=beat.device)
                slot = RemoteSlot(self, worker_id)
                self.slots[worker_id] = slot
                self.queue.attach(slot)


class RemoteSlot:
    """One remote worker's place in the queue: the `Runner` the queue sees for it."""

    def __init__(self, backend: RemoteBackend, worker_id: str) -> None:
        self.backend = backend
        self.worker_id = worker_id
        self.name = f"remote:{worker_id}"
        self.courier = Courier(backend, worker_id)
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

    def worker_back(self) -> None:
        self._gone.clear()

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
                    await self.courier.run(batch)
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
