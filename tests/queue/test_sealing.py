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
from mmpp.inference.queue import Done, Failed, Started
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote.sealing import Forged, QueueSecretError, Seal, check_transport
from mmpp.inference.queue.remote.worker import run_worker
from mmpp.inference.queue.setup import open_queue
from mmpp.settings import Settings
from tests.queue.conftest import collect
from tests.queue.test_remote import Remote, open_remote

SECRET = Fernet.generate_key().decode()


async def running(remote: Remote, handle: Any) -> None:
    async with asyncio.timeout(20):
        async for event in handle.events():
            if isinstance(event, Started):
                return


async def payload_in_redis(remote: Remote) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while not (keys := list(remote.client.scan_iter(match="arq:job:*"))):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return p.deserialize(remote.client.get(keys[0]))["a"][0]  # arq keeps the function's arguments under "a"


@pytest.mark.parametrize("secret", [None, SECRET], ids=["loopback-clear", "sealed"])
async def test_with_the_secret_redis_holds_no_readable_face(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace, secret: str | None
) -> None:
    worker = {"queue_secret": SecretStr(secret)} if secret else {}
    async for remote in open_remote(redis_url, queue_settings, real_engine, bot_secret=secret, worker_settings=worker):
        remote.probe.hold()
        handle = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2)
        await running(remote, handle)
        stolen = await payload_in_redis(remote)  # what a process with only Redis access can take
        crop = to_png(face.face)
        remote.probe.release()
        end = (await collect(handle))[-1]
        assert isinstance(end, Done) and end.result.image is not None
    readable = Seal(None).open_payload(stolen) if secret is None else None
    if secret is None:
        # Clear (allowed only on loopback): the face crop is right there.
        assert readable is not None and readable["jobs"][0]["face"] == crop
    else:
        assert crop not in stolen["sealed"] and b"\x89PNG" not in stolen["sealed"]
        with pytest.raises(Exception, match="verify"):
            Seal(Fernet.generate_key().decode()).open_payload(stolen)


async def test_a_forged_result_is_never_shown(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace
) -> None:
    worker = {"queue_secret": SecretStr(SECRET)}
    async for remote in open_remote(redis_url, queue_settings, real_engine, bot_secret=SECRET, worker_settings=worker):
        remote.probe.hold()
        handle = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=5, steps=2)
        await running(remote, handle)
        # An intruder writes a portrait and its "done", in clear and sealed with a key of its own.
        red = io.BytesIO()
        Image.new("RGB", (64, 64), "red").save(red, format="PNG")
        events = p.events_key(handle.id, 0)
        intruder = Seal(Fernet.generate_key().decode())
        remote.client.set(p.result_key(handle.id, 0), red.getvalue())
        remote.client.xadd(events, {"k": "done", "seed": "666", "s": "1"})
        remote.client.xadd(events, intruder.seal_event(handle.id, 0, {"k": "done", "seed": 666, "s": 1}))
        await asyncio.sleep(0.5)
        assert not handle.done
        remote.client.delete(p.result_key(handle.id, 0))
        remote.probe.release()
        end = (await collect(handle))[-1]
    assert isinstance(end, Done) and end.result.seed == 5
    assert end.result.image is not None and end.result.image.getpixel((32, 32)) != (255, 0, 0)


async def test_a_tampered_payload_is_not_drawn(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace
) -> None:
    worker = {"queue_secret": SecretStr(SECRET)}
    async for remote in open_remote(redis_url, queue_settings, real_engine, bot_secret=SECRET, worker_settings=worker):
        from mmpp.inference.engine import GenerationRequest

        request = GenerationRequest(face=face, style="tiny-style", seed=1, steps=2)
        sealed = Seal(SECRET).seal_payload(p.encode_batch("t", [("j-t", 0, request, False)], time.time() + 60))
        token = bytearray(sealed["sealed"])
        token[60] = ord("A") if token[60] != ord("A") else ord("B")
        assert remote.backend.pool is not None
        await remote.backend.pool.enqueue_job(
            p.BATCH_FUNCTION, {"sealed": bytes(token)}, _job_id="t", _queue_name=p.worker_queue("w1")
        )
        await asyncio.sleep(1.0)
        assert remote.probe.calls == [] and not remote.client.exists(p.events_key("j-t", 0))


async def test_a_worker_with_the_wrong_key_gets_nothing_and_members_are_told(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace
) -> None:
    worker = {"queue_secret": SecretStr(Fernet.generate_key().decode())}
    async for remote in open_remote(
        redis_url, queue_settings, real_engine, bot_secret=SECRET, worker_settings=worker, bot_batch_timeout_s=1.0
    ):
        end = (await collect(remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2)))[-1]
        assert isinstance(end, Failed) and end.code == "timeout"
        assert remote.probe.calls == []  # it could not even read the batch


def test_without_a_secret_only_a_loopback_redis_is_allowed() -> None:
    for url in ("redis://127.0.0.1:6379/0", "redis://localhost:6379/0", "redis://[::1]:6379/0"):
        check_transport(url, Seal(None))
    with pytest.raises(QueueSecretError, match="QUEUE_SECRET") as refused:
        check_transport("redis://:pw@10.0.0.5:6379/0", Seal(None))
    assert "Fernet.generate_key" in refused.value.message and "pw" not in refused.value.message
    check_transport("redis://10.0.0.5:6379/0", Seal(SECRET))
    with pytest.raises(QueueSecretError, match="not a Fernet key"):
        Seal("hunter2")


async def test_bot_and_worker_refuse_to_start_on_a_remote_redis_without_a_secret(queue_settings: Settings) -> None:
    settings = queue_settings.model_copy(update={"queue_backend": "redis", "redis_url": SecretStr("redis://192.0.2.1:6379/0")})
    with pytest.raises(QueueSecretError):
        await open_queue(settings)
    with pytest.raises(QueueSecretError):
        await run_worker(settings, catalog_wait_s=0.1)


def test_one_take_of_a_set_cannot_stand_in_for_another(astronaut: Image.Image) -> None:
    # Whoever can write to Redis may move sealed takes between keys; each opens only as itself.
    seal = Seal(SECRET)
    second = seal.seal_result(p.take_name("j", 1), 0, to_png(astronaut.resize((64, 64))))
    assert seal.open_result(p.take_name("j", 1), 0, second).size == (64, 64)
    for other in (0, 2):
        with pytest.raises(Forged):
            seal.open_result(p.take_name("j", other), 0, second)
