"""The queue with remote workers through Redis: a worker in this process, the real engine, real Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
import redis
from pydantic import SecretStr

from mmpp.bot.words.errors import describe
from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.engine import Engine, GenerationRequest
from mmpp.inference.queue import Cancelled, Done, Failed, GenerationQueue, NoWorkers, Queued, Started, Step
from mmpp.inference.queue.remote import protocol as p
from mmpp.inference.queue.remote import transport as t
from mmpp.inference.queue.remote.courier import FOLLOW_GRACE_S
from mmpp.inference.queue.remote.dispatch import RemoteBackend
from mmpp.inference.queue.remote.sealing import Seal
from mmpp.inference.queue.remote.worker import RemoteWorker, WorkerRefused, check_catalog
from mmpp.inference.styles import UnknownStyleError
from mmpp.inference.testing.recording import RecordingEngine
from mmpp.memory import HeapTrimmer
from mmpp.settings import Settings
from tests.queue.conftest import collect, started
from tests.redis_server import QUEUE_SECRET as SECRET


@dataclass
class Remote:
    queue: GenerationQueue
    backend: RemoteBackend
    worker: RemoteWorker
    probe: RecordingEngine
    client: redis.Redis

    @property
    def seal(self) -> Seal:
        return self.backend.seal

    def tag(self, job_id: str, attempt: int = 0) -> str:
        return self.seal.tag(job_id, attempt)

    def leftovers(self) -> list[str]:
        """Keys a finished job must not leave behind: its events, portrait, cancel flag, payload."""
        found = []
        for pattern in ("mmpp:ev:*", "mmpp:png:*", "mmpp:cancel:*", "mmpp:batch:*", "arq:job:*"):
            found += [k.decode() for k in self.client.scan_iter(match=pattern)]
        return found


async def open_remote(
    url: str, settings: Settings, engine: Engine, worker_id: str = "w1", *,
    bot_batch_timeout_s: float | None = None, worker_settings: dict[str, object] | None = None,
    bot_secret: str = SECRET, wait_alive: bool = True,
) -> AsyncIterator[Remote]:
    """The bot's queue and one worker; by default both on the shipped BATCH_TIMEOUT_S and one secret."""
    settings = settings.model_copy(update={"redis_url": SecretStr(url), "queue_secret": SecretStr(SECRET)})
    fingerprint = p.catalog_fingerprint(engine.catalog, engine.resolution)
    queue = GenerationQueue(None, settings, catalog=engine.catalog, initial_job_s=1.0, stop_timeout_s=5)
    timeout = {} if bot_batch_timeout_s is None else {"batch_timeout_s": bot_batch_timeout_s}
    backend = RemoteBackend(queue, url, fingerprint, Seal(bot_secret), **timeout)  # type: ignore[arg-type]
    await backend.start()
    queue.on_shutdown(backend.close)
    probe = RecordingEngine(engine)
    worker = RemoteWorker(probe, settings.model_copy(update=worker_settings or {}), worker_id, fingerprint)
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    client = redis.Redis.from_url(url)
    try:
        async with asyncio.timeout(10):
            while wait_alive and not backend.is_alive(worker_id):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        queue.start()
        yield Remote(queue, backend, worker, probe, client)
    finally:
        probe.release()
        await queue.shutdown(grace_s=5)
        stop.set()
        await asyncio.wait_for(serving, 20)
        client.close()


@pytest_asyncio.fixture(loop_scope="function")
async def remote(redis_url: str, queue_settings: Settings, real_engine: Engine) -> AsyncIterator[Remote]:
    async for r in open_remote(redis_url, queue_settings, real_engine):
        yield r


async def test_a_remote_job_streams_steps_and_previews_and_leaves_nothing_in_redis(
    remote: Remote, face: PreparedFace
) -> None:
    handle = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=11, steps=4)
    events = await collect(handle)
    assert isinstance(events[0], Queued) and isinstance(events[1], Started)
    steps = [e for e in events if isinstance(e, Step)]
    assert [s.i for s in steps] == [1, 2, 3, 4]
    assert [s.preview is not None for s in steps] == [False, True, False, True]  # preview_every=2
    done = events[-1]
    assert isinstance(done, Done)
    assert done.result.png().startswith(b"\x89PNG") and done.result.seed == 11
    assert done.result.image is not None and done.result.image.size == (64, 64)
    assert remote.probe.seeds() == [[11]]
    assert remote.leftovers() == []
    assert remote.queue.seconds_per_job > 0


async def test_cancel_stops_a_remote_job_within_one_step(remote: Remote, face: PreparedFace) -> None:
    remote.probe.step_s = 0.3
    handle = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=12)
    seen = 0
    async with asyncio.timeout(30):
        async for event in handle.events():
            if isinstance(event, Step):
                seen = event.i
                assert handle.cancel() is True
                break
        rest = [e async for e in handle.events()]
    assert isinstance(rest[-1], Cancelled)
    ran = len(remote.probe.steps[0])
    # The step running when /cancel came, and at most the one after it (the flag is read per step).
    assert ran <= seen + 2 < 12, (seen, ran)
    await asyncio.sleep(0.2)
    assert remote.leftovers() == []


async def test_a_batch_past_its_discord_deadline_never_starts(
    remote: Remote, face: PreparedFace, real_engine: Engine
) -> None:
    # Straight into the worker's queue, as a bot whose member's reply has expired would have left it.
    request = GenerationRequest(face=face, style="tiny-style", seed=1, steps=2)
    batch = p.Batch("late", "n" * 32, time.time() - 1, (p.RemoteJob("j-late", 0, request, False),))
    payload = remote.seal.seal_payload(batch.to_wire())
    assert remote.backend.pool is not None
    await remote.backend.pool.enqueue_job(t.BATCH_FUNCTION, payload, _job_id="late", _queue_name=t.worker_queue("w1"))
    events = t.events_key(remote.tag("j-late"))
    async with asyncio.timeout(10):
        while not remote.client.exists(events):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    entries = remote.client.xrange(events)
    opened = [p.Event.from_wire(remote.seal.open_event("j-late", 0, f)) for _, f in entries]
    assert [(e.kind, e.code) for e in opened] == [("failed", "expired")]
    assert remote.probe.calls == []


def test_a_worker_with_other_styles_refuses_in_one_line(redis_url: str, real_engine: Engine) -> None:
    bot = p.catalog_fingerprint(real_engine.catalog, real_engine.resolution)
    seal = Seal(SECRET)
    client = redis.Redis.from_url(redis_url)
    client.set(t.CATALOG_KEY, seal.sign("catalog", p.Catalog(bot).to_wire()))
    mine = {"styles": {**bot["styles"], "extra": "abc"}, "resolution": 128}
    mine["styles"].pop("other-style")
    with pytest.raises(WorkerRefused) as refused:
        check_catalog(client, seal, mine, wait_s=1)
    client.close()
    message = refused.value.message
    assert "\n" not in message
    assert "lacks: other-style" in message and "only this worker has: extra" in message and "128 px" in message
    check_catalog(redis.Redis.from_url(redis_url), seal, bot, wait_s=1)  # the same styles pass


def test_a_catalog_not_signed_with_the_secret_is_not_the_bots(redis_url: str, real_engine: Engine) -> None:
    bot = p.catalog_fingerprint(real_engine.catalog, real_engine.resolution)
    client = redis.Redis.from_url(redis_url)
    # Anyone can copy the fingerprint; only the secret signs it.
    client.set(t.CATALOG_KEY, json.dumps({"body": json.dumps(p.Catalog(bot).to_wire()), "mac": "0" * 64}))
    with pytest.raises(WorkerRefused, match="not signed with this QUEUE_SECRET"):
        check_catalog(client, Seal(SECRET), bot, wait_s=0.6)
    client.close()


async def test_the_redis_password_never_reaches_a_log(
    private_redis, queue_settings: Settings, real_engine: Engine, face: PreparedFace,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mmpp.logs import _Formatter

    caplog.set_level(logging.DEBUG)
    async for r in open_remote(private_redis.url, queue_settings, real_engine):
        handle = r.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2)
        assert isinstance((await collect(handle))[-1], Done)
    formatter = _Formatter(as_json=False)
    lines = [formatter.format(record) for record in caplog.records]
    assert any("redis://:***@127.0.0.1" in line for line in lines)
    assert not any(private_redis.password in line for line in lines)


async def test_with_no_worker_left_members_are_told_at_once(remote: Remote, face: PreparedFace) -> None:
    remote.probe.hold()
    running = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2)
    await started(running)
    waiting = remote.queue.submit(face, "tiny-style", user_id=2, guild_id=2, steps=2)
    # The worker vanishes as a kill -9 would leave it: no goodbye, its heartbeat simply lapses.
    remote.client.delete(t.worker_key("w1"))
    remote.worker._left = True  # no more heartbeats
    t0 = time.monotonic()
    ends = await asyncio.wait_for(asyncio.gather(running.outcome(), waiting.outcome()), 15)
    assert time.monotonic() - t0 < t.HEARTBEAT_TTL_S
    assert [(type(e), getattr(e, "code", None)) for e in ends] == [(Failed, "worker_lost"), (Failed, "no_workers")]
    with pytest.raises(NoWorkers):
        remote.queue.submit(face, "tiny-style", user_id=3, guild_id=3)


async def test_a_batch_longer_than_batch_timeout_tells_every_member(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace
) -> None:
    # The worker's BATCH_TIMEOUT_S is short; the bot keeps the shipped one (its own backstop).
    async for remote in open_remote(redis_url, queue_settings, real_engine, worker_settings={"batch_timeout_s": 1.5}):
        remote.probe.step_s = 0.5  # 12 steps: 6 s, past the worker's 1.5 s
        handles = [remote.queue.submit(face, "tiny-style", user_id=u, guild_id=1, steps=12) for u in (1, 2)]
        sent = time.monotonic()
        ends = [(await collect(h))[-1] for h in handles]
        told_s = time.monotonic() - sent
        assert [type(e) for e in ends] == [Failed, Failed], ends
        assert all(e.code == "timeout" and "took too long" in describe(e) for e in ends)  # type: ignore[union-attr]
        assert [len(call) for call in remote.probe.calls] == [2]  # one batch, both members told
        assert told_s < 1.5 + 3.0, told_s
        # The worker stopped drawing (cancel flags) and is free for the next member.
        remote.probe.step_s = 0.0
        after = await collect(remote.queue.submit(face, "tiny-style", user_id=3, guild_id=1, steps=2))
        assert isinstance(after[-1], Done)


async def test_a_worker_that_stops_publishing_mid_batch_is_not_waited_on_forever(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace
) -> None:
    # The worker keeps the shipped 15 minutes; the bot's own deadline is short.
    async for remote in open_remote(redis_url, queue_settings, real_engine, bot_batch_timeout_s=1.0):
        remote.probe.step_s = 9.0  # after step 1, nothing for 9 s, while the heartbeat goes on
        handle = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=4)
        sent = time.monotonic()
        events = await collect(handle)
        told_s = time.monotonic() - sent
        end = events[-1]
        assert isinstance(end, Failed) and end.code == "timeout" and "took too long" in describe(end)
        assert [e.i for e in events if isinstance(e, Step)] == [1]
        assert remote.backend.is_alive("w1")  # its heartbeat lived all along
        assert told_s < 1.0 + FOLLOW_GRACE_S + 1.5, told_s
        assert remote.queue.job_for(1) is None  # the member may ask again at once


async def test_a_remote_refusal_comes_as_a_code_and_fields_and_reads_as_a_local_one(
    remote: Remote, face: PreparedFace
) -> None:
    """A worker sends no words: the code and fields cross the wire and the bot words them itself."""
    refusal = UnknownStyleError(style="gone", known=["tiny-style"])
    remote.probe.fault = lambda index, requests: refusal if index == 0 else None
    handle = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2)
    end = (await collect(handle))[-1]
    assert end == Failed("unknown_style", {"style": "gone", "known": ["tiny-style"]})
    assert describe(end) == describe(refusal) == "There is no style called 'gone'. Styles available: tiny-style."


async def test_a_malformed_progress_entry_is_skipped_not_fatal(remote: Remote, face: PreparedFace) -> None:
    remote.probe.step_s = 0.3
    handle = remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=4)
    async with asyncio.timeout(30):
        async for event in handle.events():
            if isinstance(event, Started):
                break
    # Anyone who can write to Redis could add this to the job's stream.
    key = t.events_key(remote.tag(handle.id))
    bad_step = {"version": p.WIRE_VERSION, "kind": "step", "step": "not a number", "steps": 4}
    remote.client.xadd(key, remote.seal.seal_event(handle.id, 0, bad_step))
    remote.client.xadd(key, {"kind": "step", "step": "2", "steps": "4"})  # nor sealed at all
    rest = [e async for e in handle.events()]
    assert isinstance(rest[-1], Done)


class CountingTrimmer(HeapTrimmer):
    def __init__(self) -> None:
        super().__init__(interval_s=0.0)
        self.trims = 0

    def trim(self) -> bool:
        self.trims += 1
        return super().trim()


async def test_a_long_running_worker_gives_freed_heap_back_between_batches(remote: Remote, face: PreparedFace) -> None:
    assert remote.worker.trimmer.interval_s > 0  # the shipped worker trims, at most every few seconds
    remote.worker.trimmer = trimmer = CountingTrimmer()
    for user in (1, 2):
        assert isinstance((await collect(remote.queue.submit(face, "tiny-style", user_id=user, guild_id=1)))[-1], Done)
    assert trimmer.trims == 2


async def test_a_set_travels_to_a_remote_worker_and_back_whole_split_by_the_workers_own_limit(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace
) -> None:
    # The worker holds two pictures per call: a set of three is drawn in two calls, sent back as one.
    settings = queue_settings.model_copy(update={"max_batch_size": 2})
    async for remote in open_remote(redis_url, settings, real_engine):
        done = (await collect(remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=11, count=3)))[-1]
        assert isinstance(done, Done) and len(done.results) == 3
        seeds = [r.seed for r in done.results]
        assert seeds[0] == 11 and len(set(seeds)) == 3
        assert [len(call) for call in remote.probe.seeds()] == [2, 1]
        assert all(r.image is not None and r.png().startswith(b"\x89PNG") for r in done.results)
        assert remote.leftovers() == []


def test_a_payload_asking_more_takes_than_a_bot_sends_is_refused(face: PreparedFace) -> None:
    request = GenerationRequest(face=face, style="tiny-style", seed=1)
    batch = p.Batch("b", "n" * 32, 0.0, (p.RemoteJob("j", 0, request, False, (2, 3, 4)),))
    payload = t.deserialize(t.serialize(batch.to_wire()))
    [job] = p.Batch.from_wire(payload).jobs
    assert job.more_seeds == (2, 3, 4)
    # Whoever can write to Redis cannot make a worker draw a thousand pictures for one job.
    payload["jobs"][0]["more_seeds"] = list(range(1000))
    with pytest.raises(p.BadPayload):
        p.Batch.from_wire(payload)
