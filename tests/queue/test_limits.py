"""Who gets in and in what order: capacity, one job per member, fairness, batching, deadlines."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from mmpp.bot.words.errors import describe
from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.queue import AlreadyQueued, Done, Failed, QueueFull, Started
from mmpp.inference.styles import UnknownStyleError
from tests.queue.conftest import QueueFactory, collect, started
from tests.words import raises_worded


async def test_past_capacity_a_submit_fails_at_once_saying_how_long_the_wait_is(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue(queue_capacity=2, initial_job_s=60.0)
    async with queue:
        probe.hold()
        running = queue.submit(face, "tiny-style", user_id=1, guild_id=1)
        await started(running)
        waiting = [queue.submit(face, "tiny-style", user_id=n, guild_id=1) for n in (2, 3)]
        with pytest.raises(QueueFull) as refused:
            queue.submit(face, "tiny-style", user_id=4, guild_id=2)
        # The running job plus the two waiting at the seeded 60 s each.
        worded = describe(refused.value)
        assert "2 portraits are already waiting" in worded
        # As a Discord timestamp about 3 minutes on, which each member's client words in their language;
        # the queue itself gives seconds, never markup.
        assert abs(refused.value.estimated_wait_s - 180) < 20 and "<t:" not in str(refused.value)
        moment = int(re.search(r"<t:(\d+):R>", worded).group(1))  # type: ignore[union-attr]
        assert abs(moment - (time.time() + 180)) < 20
        assert "try again" in worded
        assert refused.value.code == "queue_full"

        waiting[0].cancel()
        assert queue.submit(face, "tiny-style", user_id=4, guild_id=2).state.value == "waiting"
        probe.release()


async def test_one_active_job_per_member_with_the_reason(make_queue: QueueFactory, face: PreparedFace) -> None:
    queue, probe = make_queue(max_batch_size=1)
    async with queue:
        probe.hold()
        mine = queue.submit(face, "tiny-style", user_id=1, guild_id=1)
        await started(mine)
        with raises_worded(AlreadyQueued, "being made right now"):
            queue.submit(face, "tiny-style", user_id=1, guild_id=2)
        other = queue.submit(face, "tiny-style", user_id=2, guild_id=1)
        with raises_worded(AlreadyQueued, "number 1 in line") as refused:
            queue.submit(face, "other-style", user_id=2, guild_id=None)
        assert refused.value.job_id == other.id
        probe.release()
        assert isinstance(await mine.outcome(), Done)
        again = queue.submit(face, "tiny-style", user_id=1, guild_id=1)
        assert isinstance(await again.outcome(), Done)


async def test_unknown_style_is_refused_before_queueing(make_queue: QueueFactory, face: PreparedFace) -> None:
    queue, _ = make_queue()
    async with queue:
        with raises_worded(UnknownStyleError, "tiny-style"):
            queue.submit(face, "no-such-style", user_id=1, guild_id=1)
        assert queue.depth == 0 and queue.position(1) is None


async def test_servers_take_turns_and_each_server_is_first_come_first_served(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue(max_batch_size=1)
    async with queue:
        probe.hold()
        gate = queue.submit(face, "tiny-style", user_id=999, guild_id=9, seed=0)
        await started(gate)
        busy = [queue.submit(face, "tiny-style", user_id=n, guild_id=1, seed=n) for n in range(1, 7)]
        small = queue.submit(face, "tiny-style", user_id=20, guild_id=2, seed=20)
        dm = queue.submit(face, "tiny-style", user_id=30, guild_id=None, seed=30)
        assert queue.position(20) == 2 and queue.position(30) == 3 and queue.position(6) == 8
        probe.release()
        await asyncio.gather(*(h.outcome() for h in [*busy, small, dm]))
    assert [call[0] for call in probe.seeds()] == [0, 1, 20, 30, 2, 3, 4, 5, 6]


async def test_same_style_jobs_waiting_together_share_one_engine_call(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue(max_batch_size=4)
    async with queue:
        probe.hold()
        gate = queue.submit(face, "tiny-style", user_id=999, guild_id=9, seed=0)
        await started(gate)
        plan = [(1, "tiny-style"), (2, "other-style"), (3, "tiny-style"), (4, "tiny-style"),
                (5, "tiny-style"), (6, "tiny-style"), (7, "other-style")]
        handles = [queue.submit(face, style, user_id=n, guild_id=1, seed=n) for n, style in plan]
        probe.release()
        results = await asyncio.gather(*(collect(h) for h in handles))

    assert probe.calls[1:] == [
        [("tiny-style", 1), ("tiny-style", 3), ("tiny-style", 4), ("tiny-style", 5)],
        [("other-style", 2), ("other-style", 7)],
        [("tiny-style", 6)],
    ]
    sizes = {n: next(e.batch_size for e in events if isinstance(e, Started)) for (n, _), events in
             zip(plan, results, strict=True)}
    assert sizes == {1: 4, 3: 4, 4: 4, 5: 4, 2: 2, 7: 2, 6: 1}
    assert all(isinstance(events[-1], Done) and events[-1].result.image is not None for events in results)


async def test_gather_window_lets_a_burst_on_an_idle_gpu_share_a_call(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue(max_batch_size=4, queue_batch_wait_s=0.5)
    async with queue:
        first = queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=1)
        await asyncio.sleep(0.05)  # the worker is awake and gathering, not yet running
        second = queue.submit(face, "tiny-style", user_id=2, guild_id=2, seed=2)
        await asyncio.gather(first.outcome(), second.outcome())
    assert probe.seeds() == [[1, 2]]


async def test_a_job_past_its_deadline_fails_instead_of_running_for_nobody(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue()
    async with queue:
        probe.hold()
        gate = queue.submit(face, "tiny-style", user_id=999, guild_id=9, seed=0)
        await started(gate)
        late = queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=1, deadline=time.monotonic() + 0.2)
        # It fails while the GPU is still busy: the member hears about it without waiting for the GPU.
        outcome = await asyncio.wait_for(late.outcome(), timeout=5)
        assert isinstance(outcome, Failed) and outcome.code == "timeout"
        assert "too busy to start your portrait in time" in describe(outcome)
        assert queue.position(1) is None
        probe.release()
        await gate.outcome()
    assert probe.seeds() == [[0]]
