"""One job's life as the bot sees it: events, previews, estimates, and an event loop that keeps going."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from PIL import Image

from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.queue import Done, Queued, Started, Step
from tests.queue.conftest import QueueFactory, collect, started


async def test_event_loop_keeps_ticking_while_the_engine_works(make_queue: QueueFactory, face: PreparedFace) -> None:
    queue, probe = make_queue()
    ticks: list[float] = []

    async def heartbeat() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    async with queue:
        beat = asyncio.create_task(heartbeat())
        handle = queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=25)
        events = await collect(handle)
        beat.cancel()
    assert isinstance(events[-1], Done)
    begin, end = probe.entered_at[0], probe.returned_at[0]
    assert end - begin > 0.3, "the generation was too short to show anything"
    during = [t for t in ticks if begin <= t <= end]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    # Blocking the loop would mean no ticks at all during the call, i.e. one gap as long as the call.
    assert len(during) >= 10
    assert max(gaps) < min(0.25, (end - begin) / 3)


async def test_a_job_goes_queued_started_steps_done_with_previews_every_k_steps(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, _ = make_queue(preview_every=2)
    async with queue:
        wants = queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=5)
        no_previews = queue.submit(face, "tiny-style", user_id=2, guild_id=1, seed=6, previews=False)
        events, quiet = await asyncio.gather(collect(wants), collect(no_previews))

    assert events[0] == Queued(position=1, estimated_wait_s=0.0)
    assert isinstance(events[1], Started) and events[1].batch_size == 2
    steps = [e for e in events if isinstance(e, Step)]
    assert [(s.i, s.n) for s in steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [s.i for s in steps if s.preview is not None] == [2, 4]
    assert all(isinstance(s.preview, Image.Image) for s in steps if s.preview is not None)
    assert all(e.preview is None for e in quiet if isinstance(e, Step))

    done = events[-1]
    assert isinstance(done, Done)
    assert done.result.png().startswith(b"\x89PNG")
    assert done.result.seed == 5 and done.result.style == "tiny-style"
    assert done.timings.batch_size == 2 and done.timings.ran_s >= done.timings.engine_s > 0
    assert wants.done and queue.position(1) is None


async def test_positions_update_as_the_line_moves_and_cancel_leaves_at_once(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue(max_batch_size=1)
    async with queue:
        probe.hold()
        first = queue.submit(face, "tiny-style", user_id=100, guild_id=1, seed=100)
        await started(first)
        handles = [queue.submit(face, "tiny-style", user_id=n, guild_id=1, seed=n) for n in (1, 2, 3)]
        assert [queue.position(n) for n in (1, 2, 3)] == [1, 2, 3]
        assert queue.position(100) == 0
        last = handles[2].events()
        first_seen = await anext(last)
        assert isinstance(first_seen, Queued) and first_seen.position == 3

        assert handles[0].cancel() is True
        assert handles[0].done  # no waiting for the GPU to leave the line
        assert queue.position(3) == 2
        moved = await anext(last)
        assert isinstance(moved, Queued) and moved.position == 2
        assert moved.estimated_wait_s < first_seen.estimated_wait_s
        assert queue.cancel_user(2) is True and handles[1].done
        assert queue.cancel_user(2) is False and queue.job_for(3) is not None
        probe.release()
        rest = [event async for event in last]

    assert [e.position for e in rest if isinstance(e, Queued)][-1] == 1
    assert isinstance(rest[-1], Done)
    assert [seed for call in probe.seeds() for seed in call] == [100, 3]


async def test_the_wait_estimate_learns_from_measured_jobs(make_queue: QueueFactory, face: PreparedFace) -> None:
    queue, probe = make_queue(max_batch_size=1, initial_job_s=60.0)
    async with queue:
        probe.hold()
        first = queue.submit(face, "tiny-style", user_id=1, guild_id=1)
        await started(first)
        third = queue.submit(face, "tiny-style", user_id=2, guild_id=2)
        guess = queue.submit(face, "tiny-style", user_id=3, guild_id=3)
        seeded = await anext(guess.events())
        assert isinstance(seeded, Queued) and seeded.position == 2
        # Before any measurement: the seed (60 s a job) for the running job and the one ahead.
        assert seeded.estimated_wait_s > 100
        probe.release()
        await asyncio.gather(first.outcome(), third.outcome(), guess.outcome())

        measured = queue.seconds_per_job
        assert 0 < measured < 5
        probe.hold()
        running = queue.submit(face, "tiny-style", user_id=4, guild_id=1)
        await started(running)
        queue.submit(face, "tiny-style", user_id=5, guild_id=2)
        later = queue.submit(face, "tiny-style", user_id=6, guild_id=3)
        queued = await anext(later.events())
        probe.release()
    assert isinstance(queued, Queued) and queued.position == 2
    assert queued.estimated_wait_s == pytest.approx(2 * measured, abs=1.0)


async def test_a_set_of_takes_is_one_place_one_engine_call_with_distinct_reproducible_seeds(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue(max_batch_size=4)
    async with queue:
        first = await queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=7, count=2).outcome()
        again = await queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=7, count=2).outcome()
    assert isinstance(first, Done) and isinstance(again, Done)
    assert len(probe.calls) == 2 and all(len(call) == 2 for call in probe.calls)
    seeds = [r.seed for r in first.results]
    assert seeds[0] == 7 and len(set(seeds)) == 2
    # A room with a fixed seed gets the same set again.
    assert [r.seed for r in again.results] == seeds
    assert all(r.image is not None for r in first.results)


async def test_a_set_larger_than_the_batch_is_drawn_in_several_calls_and_arrives_as_one(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue(max_batch_size=1)
    async with queue:
        handle = queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=7, count=3)
        assert queue.depth == 1  # one place in line
        events = await collect(handle)
    done = events[-1]
    assert isinstance(done, Done) and len(done.results) == 3
    assert [len(call) for call in probe.calls] == [1, 1, 1]
    assert [r.seed for r in done.results] == [seed for [seed] in probe.seeds()]
    assert sum(isinstance(e, Done) for e in events) == 1
