"""Anyone who can reach Redis is not a worker: with QUEUE_SECRET, faces cannot be read there, and a
forged result, a tampered payload or a worker with the wrong key gets nothing past the bot."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import pytest
from cryptography.fernet import Fernet
from PIL import Image
from pydantic import SecretStr

from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.engine import Engine, to_png
from mmpp.inference.queue import Done, NoWorkers, Started
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote import transport as t
from mmpp.inference.queue.remote.sealing import Forged, QueueSecretError, Seal
from mmpp.inference.queue.remote.worker import run_worker
from mmpp.inference.queue.setup import open_queue
from mmpp.settings import Settings
from tests.queue.conftest import collect
from tests.queue.test_remote import SECRET, Remote, open_remote


async def running(remote: Remote, handle: Any) -> None:
    async with asyncio.timeout(20):
        async for event in handle.events():
            if isinstance(event, Started):
                return


async def payload_in_redis(remote: Remote, timeout: float = 10) -> dict[str, Any]:
    """The first arq job's sealed payload, once one is in Redis: what an intruder there can take."""
    async with asyncio.timeout(timeout):
        while not (keys := list(remote.client.scan_iter(match="arq:job:*"))):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return t.deserialize(remote.client.get(keys[0]))["a"][0]  # arq keeps the function's arguments under "a"


async def test_with_the_secret_redis_holds_no_readable_face(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace
) -> None:
    async for remote in open_remote(redis_url, queue_settings, real_engine):
        remote.probe.hold()
        handle = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2)
        await running(remote, handle)
        stolen = await payload_in_redis(remote)  # what a process with only Redis access can take
        crop = to_png(face.face)
        remote.probe.release()
        end = (await collect(handle))[-1]
        assert isinstance(end, Done) and end.result.image is not None
    assert crop not in stolen["sealed"] and b"\x89PNG" not in stolen["sealed"]
    with pytest.raises(Exception, match="verify"):
        Seal(Fernet.generate_key().decode()).open_payload(stolen)


async def test_a_forged_result_is_never_shown(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace
) -> None:
    async for remote in open_remote(redis_url, queue_settings, real_engine):
        remote.probe.hold()
        handle = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=5, steps=2)
        await running(remote, handle)
        # An intruder writes a portrait and its "done", in clear and sealed with a key of its own.
        red = io.BytesIO()
        Image.new("RGB", (64, 64), "red").save(red, format="PNG")
        events = t.events_key(remote.tag(handle.id))
        intruder = Seal(Fernet.generate_key().decode())
        done = p.Event("done", takes=(p.Take(666),), seconds=1).to_wire()
        remote.client.set(t.result_key(remote.tag(handle.id)), red.getvalue())
        remote.client.xadd(events, {"kind": "done", "seed": "666", "seconds": "1"})
        remote.client.xadd(events, intruder.seal_event(handle.id, 0, done))
        await asyncio.sleep(0.5)
        assert not handle.done
        remote.client.delete(t.result_key(remote.tag(handle.id)))
        remote.probe.release()
        end = (await collect(handle))[-1]
    assert isinstance(end, Done) and end.result.seed == 5
    assert end.result.image is not None and end.result.image.getpixel((32, 32)) != (255, 0, 0)


async def test_a_tampered_payload_is_not_drawn(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace
) -> None:
    async for remote in open_remote(redis_url, queue_settings, real_engine):
        from mmpp.inference.engine import GenerationRequest

        request = GenerationRequest(face=face, style="tiny-style", seed=1, steps=2)
        batch = p.Batch("t", "n" * 32, time.time() + 60, (p.RemoteJob("j-t", 0, request, False),))
        sealed = Seal(SECRET).seal_payload(batch.to_wire())
        token = bytearray(sealed["sealed"])
        token[60] = ord("A") if token[60] != ord("A") else ord("B")
        assert remote.backend.pool is not None
        await remote.backend.pool.enqueue_job(
            t.BATCH_FUNCTION, {"sealed": bytes(token)}, _job_id="t", _queue_name=t.worker_queue("w1")
        )
        await asyncio.sleep(1.0)
        assert remote.probe.calls == [] and not remote.client.exists(t.events_key(remote.tag("j-t")))


async def test_a_worker_with_the_wrong_key_gets_nothing_and_members_are_told(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace,
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = {"queue_secret": SecretStr(Fernet.generate_key().decode())}
    async for remote in open_remote(redis_url, queue_settings, real_engine, worker_settings=worker, wait_alive=False):
        await asyncio.sleep(2 * t.HEARTBEAT_EVERY_S + 0.5)
        # Its heartbeat does not verify: it is no worker of this bot, and members hear so at once.
        assert not remote.backend.is_alive("w1") and remote.queue.workers == 0
        with pytest.raises(NoWorkers):
            remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2)
        assert remote.probe.calls == []
    assert any(r.getMessage().startswith("heartbeat ignored") for r in caplog.records)


def test_the_secret_must_be_a_fernet_key() -> None:
    with pytest.raises(QueueSecretError, match="not a Fernet key") as refused:
        Seal("hunter2")
    assert "Fernet.generate_key" in refused.value.message and "\n" not in refused.value.message


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "redis://localhost:6379/0", "redis://:pw@10.0.0.5:6379/0"])
async def test_bot_and_worker_refuse_to_start_without_a_secret_loopback_or_not(
    queue_settings: Settings, url: str
) -> None:
    # A Redis on 127.0.0.1 may listen elsewhere too, and any process on the machine reaches it.
    settings = queue_settings.model_copy(update={"queue_backend": "redis", "redis_url": SecretStr(url),
                                                 "queue_secret": None})
    with pytest.raises(QueueSecretError) as bot:
        await open_queue(settings)
    with pytest.raises(QueueSecretError) as worker:
        await run_worker(settings, catalog_wait_s=0.1)
    make = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
    assert bot.value.message == f"QUEUE_BACKEND=redis needs QUEUE_SECRET, the same key on the bot and every worker " \
        f"(make one with: {make})"
    assert worker.value.message.startswith("this worker needs QUEUE_SECRET") and make in worker.value.message
    assert "pw" not in bot.value.message + worker.value.message


def test_one_take_of_a_set_cannot_stand_in_for_another(astronaut: Image.Image) -> None:
    # Whoever can write to Redis may move sealed takes between keys; each opens only as itself.
    seal = Seal(SECRET)
    second = seal.seal_result(t.take_name("j", 1), 0, to_png(astronaut.resize((64, 64))))
    assert seal.open_result(t.take_name("j", 1), 0, second).size == (64, 64)
    for other in (0, 2):
        with pytest.raises(Forged):
            seal.open_result(t.take_name("j", other), 0, second)
