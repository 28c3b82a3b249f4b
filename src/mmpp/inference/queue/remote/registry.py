"""Who is a worker, and which bot process holds it: the bot's reading of signed heartbeats and its
signed claims. Whoever can write to Redis can delete these keys (a worker then looks gone, as after a
kill -9) but cannot make one: a heartbeat or claim that does not verify, is stale, or names another
worker is ignored and logged, and the last good heartbeat stands until it would have lapsed."""

from __future__ import annotations

import logging
import time
from typing import Any

from arq.connections import ArqRedis

from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote import transport as t
from mmpp.inference.queue.remote.sealing import Forged, Seal
from mmpp.logs import log_event

log = logging.getLogger(__name__)

# A worker's claim outlives a bot process that died holding it by at most this long.
CLAIM_TTL_S = 10.0
# Replace a claim only while it still holds what was read (another bot may have claimed since).
SWAP = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) "
    "else return false end"
)
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
UNREADABLE = (Forged, p.BadPayload, KeyError, ValueError, TypeError)


async def redis_now(pool: ArqRedis) -> float:
    """Now on the Redis server's clock: the one clock the bot and every worker machine read alike."""
    seconds, micros = await pool.time()
    return float(seconds) + micros / 1e6


class Heartbeats:
    """The live workers, from their signed heartbeats, with the fingerprint the bot expects."""

    def __init__(self, seal: Seal, fingerprint: dict[str, Any]) -> None:
        self.seal = seal
        self.fingerprint = fingerprint
        self.alive: dict[str, p.Heartbeat] = {}
        self._seen: dict[str, float] = {}  # worker -> monotonic time of its last good heartbeat
        self._refused: set[str] = set()
        self._forged: set[str] = set()

    def read(self, beats: dict[str, bytes], now: float) -> dict[str, p.Heartbeat]:
        """`beats`: worker id -> what its key holds; `now`: Redis's clock. The workers alive now."""
        alive: dict[str, p.Heartbeat] = {}
        for worker_id, raw in beats.items():
            try:
                beat = p.Heartbeat.from_wire(self.seal.verify("heartbeat", raw))
                if beat.worker != worker_id:
                    raise Forged("another worker's heartbeat")
                if now - beat.at > t.HEARTBEAT_TTL_S:
                    raise Forged("a stale heartbeat")
            except UNREADABLE as exc:
                if worker_id not in self._forged:
                    self._forged.add(worker_id)
                    log_event(log, logging.WARNING, "heartbeat ignored", worker=worker_id,
                              why=str(exc) or type(exc).__name__)
                last = self.alive.get(worker_id)
                if last is not None and time.monotonic() - self._seen[worker_id] < t.HEARTBEAT_TTL_S:
                    alive[worker_id] = last
                continue
            self._forged.discard(worker_id)
            difference = p.describe_difference(self.fingerprint, beat.fingerprint)
            if difference is not None:
                if worker_id not in self._refused:
                    self._refused.add(worker_id)
                    log_event(log, logging.WARNING, "worker ignored, its models differ", worker=worker_id,
                              difference=difference)
                continue
            alive[worker_id] = beat
            self._seen[worker_id] = time.monotonic()
        self.alive = alive
        return alive


class Claim:
    """One bot process's hold on one worker for one batch; the value is a signed `protocol.Claim`."""

    def __init__(self, pool: ArqRedis, seal: Seal, bot_id: str, worker_id: str) -> None:
        self.pool, self.seal, self.bot_id, self.worker_id = pool, seal, bot_id, worker_id
        self.key = t.claim_key(worker_id)
        self.value: bytes | None = None

    def _signed(self, now: float) -> bytes:
        return self.seal.sign("claim", p.Claim(self.bot_id, self.worker_id, now).to_wire())

    async def take(self) -> bool:
        """True when this process now holds the worker; False when another bot process does."""
        # Now, read before the claim: a pause of this process in between must not make a good claim
        # of another bot process look stale.
        now = await redis_now(self.pool)
        value = self._signed(now)
        ttl_ms = int(CLAIM_TTL_S * 1000)
        if await self.pool.set(self.key, value, nx=True, px=ttl_ms):
            self.value = value
            return True
        held = await self.pool.get(self.key)
        if held is None:
            return False  # released a moment ago: the next try takes it
        try:
            claim = p.Claim.from_wire(self.seal.verify("claim", held))
            if claim.worker != self.worker_id:
                raise Forged("another worker's claim")
            if now - claim.at > CLAIM_TTL_S:
                raise Forged("a stale claim")
            return False  # another bot process of ours holds it
        except UNREADABLE as exc:
            log_event(log, logging.WARNING, "claim ignored", worker=self.worker_id, why=str(exc) or type(exc).__name__)
        if await self.pool.eval(SWAP, 1, self.key, held, value, ttl_ms):  # type: ignore[no-untyped-call]
            self.value = value
            return True
        return False

    async def renew(self) -> None:
        """A fresh `at`, so the claim stays good while the batch runs."""
        if self.value is None:
            return
        value = self._signed(await redis_now(self.pool))
        if await self.pool.eval(SWAP, 1, self.key, self.value, value, int(CLAIM_TTL_S * 1000)):  # type: ignore[no-untyped-call]
            self.value = value

    async def release(self) -> None:
        if self.value is not None:
            await self.pool.eval(RELEASE, 1, self.key, self.value)  # type: ignore[no-untyped-call]
            self.value = None
