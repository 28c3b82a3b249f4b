"""Whoever can write to Redis is not a worker (issue 29): a forged heartbeat with a copied fingerprint
gets no batch, a replayed payload is not drawn again, a forged cancel cancels nothing, a forged
"stopping" idles nobody. The intruder here knows everything Redis shows, but not QUEUE_SECRET."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet

from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.engine import Engine
from mmpp.inference.queue import Cancelled, Done, Step
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote import transport as t
from mmpp.inference.queue.remote.sealing import Seal
from mmpp.settings import Settings
from tests.queue.conftest import collect
from tests.queue.test_remote import open_remote
from tests.queue.test_sealing import payload_in_redis


def warnings(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    """The structured fields of each warning logged as `event`."""
    return [r.fields for r in caplog.records  # type: ignore[attr-defined]
            if r.levelno == logging.WARNING and r.getMessage() == event]


async def keep_writing(client: redis.Redis, key: str, value: bytes, seconds: float) -> None:
    """An intruder who writes the same key over and over, racing the real writer."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while loop.time() < until:
        client.set(key, value, px=int(t.HEARTBEAT_TTL_S * 1000))
        await asyncio.sleep(0.05)


async def running(handle: Any) -> None:
    async with asyncio.timeout(20):
        async for event in handle.events():
            if isinstance(event, Step):
                return


async def test_a_forged_heartbeat_with_a_copied_fingerprint_never_receives_a_batch(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async for remote in open_remote(redis_url, queue_settings, real_engine):
        # The fingerprint is readable in Redis (signed, not secret), and so is a real heartbeat.
        fingerprint = Seal.read_unverified(remote.client.get(t.CATALOG_KEY))["fingerprint"]
        real = remote.client.get(t.worker_key("w1"))
        forged = p.Heartbeat("evil", "cuda", 8, fingerprint, at=float(remote.client.time()[0])).to_wire()
        body = json.dumps(forged, separators=(",", ":"), sort_keys=True)
        forgeries = {
            "evil": json.dumps(forged).encode(),  # unsigned
            "evil2": json.dumps({"body": body, "mac": json.loads(real)["mac"]}).encode(),  # a real worker's MAC
            "w1-copy": real,  # a real worker's whole heartbeat, under another name
        }
        writers = [asyncio.create_task(keep_writing(remote.client, t.worker_key(name), value, 3.0))
                   for name, value in forgeries.items()]
        handles = [remote.queue.submit(face, "tiny-style", user_id=u, guild_id=u, steps=2) for u in (1, 2, 3)]
        ends = [(await collect(h))[-1] for h in handles]
        await asyncio.gather(*writers)
        assert all(isinstance(e, Done) for e in ends)
        assert set(remote.backend.alive) == {"w1"} and remote.queue.workers == 1
        assert sum(len(call) for call in remote.probe.calls) == 3  # all drawn by the real worker
        for name in forgeries:
            assert not remote.client.exists(t.worker_queue(name))  # nothing was ever handed to it
    assert {f["worker"] for f in warnings(caplog, "heartbeat ignored")} == set(forgeries)


async def test_a_replayed_payload_is_refused(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async for remote in open_remote(redis_url, queue_settings, real_engine):
        remote.probe.hold()
        handle = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2)
        stolen = await payload_in_redis(remote, timeout=20)
        remote.probe.release()
        assert isinstance((await collect(handle))[-1], Done)
        assert len(remote.probe.calls) == 1
        # The intruder puts the sealed payload back, under a fresh arq job id, before its expiry.
        assert remote.backend.pool is not None
        await remote.backend.pool.enqueue_job(
            t.BATCH_FUNCTION, stolen, _job_id="replay", _queue_name=t.worker_queue("w1")
        )
        async with asyncio.timeout(10):
            while not warnings(caplog, "batch refused"):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert len(remote.probe.calls) == 1  # not drawn again
        assert not remote.client.exists(t.events_key(remote.tag(handle.id)))  # nothing written for it
        # Deleting the nonce's key does not help: the worker remembers what it took, too.
        for key in remote.client.scan_iter(match="mmpp:nonce:*"):
            remote.client.delete(key)
        await remote.backend.pool.enqueue_job(
            t.BATCH_FUNCTION, stolen, _job_id="replay-2", _queue_name=t.worker_queue("w1")
        )
        async with asyncio.timeout(10):
            while len(warnings(caplog, "batch refused")) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert len(remote.probe.calls) == 1
    assert [f["why"] for f in warnings(caplog, "batch refused")] == ["replayed", "replayed"]


async def test_a_forged_cancel_cancels_nothing_and_no_key_names_a_job(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async for remote in open_remote(redis_url, queue_settings, real_engine):
        remote.probe.step_s = 0.25
        handle = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=12)
        await running(handle)
        names = [k.decode() for k in remote.client.scan_iter(match="*")]
        assert not any(handle.id in name for name in names), names  # job ids never appear in key names
        # The strongest intruder: it found the job's stream by its tag and writes the cancel key beside it.
        key = t.cancel_key(remote.tag(handle.id))
        remote.client.set(key, b"1")
        await asyncio.sleep(0.5)
        remote.client.set(key, Seal(Fernet.generate_key().decode()).cancel_flag(handle.id, 0))  # another key's
        await asyncio.sleep(0.5)
        # The bot's real flags, copied from another job and from another attempt of this one.
        remote.client.set(key, remote.seal.cancel_flag("another-job", 0))
        await asyncio.sleep(0.3)
        remote.client.set(key, remote.seal.cancel_flag(handle.id, 1))
        events = await collect(handle)
        assert isinstance(events[-1], Done)
        assert [e.i for e in events if isinstance(e, Step)][-1] == 12
    assert warnings(caplog, "forged cancel ignored")
    # The bot's own cancel still works (the same key, signed).
    async for remote in open_remote(redis_url, queue_settings, real_engine):
        remote.probe.step_s = 0.2
        handle = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=12)
        await running(handle)
        assert handle.cancel() is True
        assert isinstance((await collect(handle))[-1], Cancelled)


async def test_a_forged_stopping_or_device_idles_and_changes_nobody(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async for remote in open_remote(redis_url, queue_settings, real_engine):
        real = remote.client.get(t.worker_key("w1"))
        body = Seal.read_unverified(real)
        device = remote.backend.slots["w1"].device
        altered = json.dumps({"body": json.dumps({**body, "stopping": True, "device": "cuda"},
                                                 separators=(",", ":"), sort_keys=True),
                              "mac": json.loads(real)["mac"]}).encode()
        writer = asyncio.create_task(keep_writing(remote.client, t.worker_key("w1"), altered, 3.0))
        await asyncio.sleep(1.0)
        assert remote.backend.takes_work("w1") and remote.queue.workers == 1
        assert remote.backend.slots["w1"].device == device != "cuda"  # "cuda" would double the default takes
        ends = [(await collect(remote.queue.submit(face, "tiny-style", user_id=u, guild_id=u, steps=2)))[-1]
                for u in (1, 2)]
        await writer
        assert all(isinstance(e, Done) for e in ends)
        assert remote.backend.takes_work("w1") and remote.queue.workers == 1
    assert [f["worker"] for f in warnings(caplog, "heartbeat ignored")][:1] == ["w1"]

