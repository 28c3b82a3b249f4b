"""Cancelling, engine faults, out-of-memory, shutdown: the worker always carries on or says why not."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import pytest
import torch

from mmpp.bot.words.errors import describe
from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.engine import GenerationRequest
from mmpp.inference.queue import Cancelled, Done, Failed, QueueClosed, Step
from mmpp.inference.styles import UnknownStyleError
from tests.queue.conftest import QueueFactory, collect, started


async def test_cancelling_a_running_job_stops_it_within_one_step_and_its_batch_mate_finishes(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue(max_batch_size=2)
    async with queue:
        leaver = queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=30)
        stayer = queue.submit(face, "tiny-style", user_id=2, guild_id=2, steps=30)
        stayer_events = asyncio.create_task(collect(stayer))
        seen: list[Step] = []
        at_cancel = 0
        async for event in leaver.events():
            if isinstance(event, Step):
                seen.append(event)
                if event.i == 3:
                    at_cancel = probe.last_step
                    assert leaver.cancel() is True
            last = event
        mate = await stayer_events

    assert isinstance(last, Cancelled)
    first_off = next(step for step, active in probe.steps[0] if not active[0])
    assert first_off <= at_cancel + 1
    assert max(s.i for s in seen) < first_off
    assert len(probe.calls) == 1
    assert isinstance(mate[-1], Done) and mate[-1].result.image is not None
    assert [e.i for e in mate if isinstance(e, Step)] == list(range(1, 31))


async def test_cancelling_a_lone_running_job_ends_the_engine_call_early(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue()
    async with queue:
        handle = queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=400)
        async for event in handle.events():
            if isinstance(event, Step) and event.i == 2:
                at_cancel = probe.last_step
                cancelled_at = time.perf_counter()
                handle.cancel()
            last = event
        follow = queue.submit(face, "tiny-style", user_id=1, guild_id=1)
        assert isinstance(await follow.outcome(), Done)
    assert isinstance(last, Cancelled)
    assert probe.steps[0][-1][0] <= at_cancel + 1
    assert probe.returned_at[0] - cancelled_at < 2.0  # 400 steps would take many seconds


def _fault_on(indices: set[int], exc: BaseException):  # type: ignore[no-untyped-def]
    def fault(index: int, requests: Sequence[GenerationRequest]) -> BaseException | None:
        return exc if index in indices else None

    return fault


async def test_an_engine_error_fails_that_batch_and_the_worker_goes_on(
    make_queue: QueueFactory, face: PreparedFace, caplog: pytest.LogCaptureFixture
) -> None:
    queue, probe = make_queue()
    probe.fault = _fault_on({0}, RuntimeError("CUDA error: device-side assert at /secret/path"))
    async with queue:
        with caplog.at_level(logging.ERROR, logger="mmpp.inference.queue"):
            broken = await queue.submit(face, "tiny-style", user_id=1, guild_id=1).outcome()
        assert isinstance(broken, Failed) and broken.code == "engine_error"
        assert "secret" not in describe(broken) and "try again" in describe(broken)
        assert any("engine error" in r.message and r.exc_info for r in caplog.records)
        assert isinstance(await queue.submit(face, "tiny-style", user_id=1, guild_id=1).outcome(), Done)


async def test_a_user_facing_engine_error_reaches_the_member_as_is(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue()
    probe.fault = _fault_on({0}, UnknownStyleError(style="gone", known=["tiny-style"]))
    async with queue:
        outcome = await queue.submit(face, "tiny-style", user_id=1, guild_id=1).outcome()
    # Its code and fields, not words: the bot words them as it words the same refusal at submit.
    assert outcome == Failed("unknown_style", {"style": "gone", "known": ["tiny-style"]})
    assert describe(outcome) == "There is no style called 'gone'. Styles available: tiny-style."


async def test_out_of_memory_retries_the_batch_one_job_at_a_time(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue(max_batch_size=4)
    probe.fault = lambda index, requests: (
        torch.cuda.OutOfMemoryError("simulated") if len(requests) > 1 else None
    )
    async with queue:
        probe.hold()
        gate = queue.submit(face, "tiny-style", user_id=999, guild_id=9, seed=0)
        await started(gate)
        handles = [queue.submit(face, "tiny-style", user_id=n, guild_id=n, seed=n) for n in (1, 2, 3)]
        probe.release()
        outcomes = await asyncio.gather(*(h.outcome() for h in handles))
    assert probe.seeds() == [[0], [1, 2, 3], [1], [2], [3]]
    assert all(isinstance(o, Done) and o.result.image is not None for o in outcomes)


async def test_out_of_memory_for_a_single_job_fails_it_and_the_next_job_runs(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue()
    probe.fault = _fault_on({0, 1}, torch.cuda.OutOfMemoryError("simulated"))
    async with queue:
        lost = await queue.submit(face, "tiny-style", user_id=1, guild_id=1).outcome()
        assert isinstance(lost, Failed) and lost.code == "out_of_memory"
        assert "ran out of memory" in describe(lost)
        assert isinstance(await queue.submit(face, "tiny-style", user_id=2, guild_id=1).outcome(), Done)
    assert len(probe.calls) == 3  # the failed call, its one retry, the next job


async def test_shutdown_finishes_the_running_batch_and_reports_the_dropped(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue(max_batch_size=1)
    queue.start()
    probe.hold()
    running = queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=1)
    await started(running)
    waiting = [queue.submit(face, "tiny-style", user_id=n, guild_id=n, seed=n) for n in (2, 3)]
    stopping = asyncio.create_task(queue.shutdown(grace_s=10))
    await asyncio.sleep(0.05)
    with pytest.raises(QueueClosed):
        queue.submit(face, "tiny-style", user_id=4, guild_id=1)
    probe.release()
    report = await stopping

    assert isinstance(await running.outcome(), Done)
    for handle in waiting:
        outcome = await handle.outcome()
        assert isinstance(outcome, Failed) and outcome.code == "shutdown" and "restarting" in describe(outcome)
    assert report.finished == 1 and report.clean
    assert sorted((d.job_id, d.was_running) for d in report.dropped) == sorted((h.id, False) for h in waiting)
    assert probe.seeds() == [[1]]


async def test_shutdown_stops_a_long_running_job_within_the_grace_period(
    make_queue: QueueFactory, face: PreparedFace
) -> None:
    queue, probe = make_queue()
    queue.start()
    long = queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=400)
    async for event in long.events():
        if isinstance(event, Step):
            break
    began = time.perf_counter()
    report = await queue.shutdown(grace_s=0.2)
    assert time.perf_counter() - began < 3
    outcome = await long.outcome()
    assert isinstance(outcome, Failed) and outcome.code == "shutdown"
    assert [(d.job_id, d.was_running) for d in report.dropped] == [(long.id, True)]
    assert report.finished == 0 and report.clean
    assert probe.last_step < 400


async def test_a_dead_worker_is_loud_fails_the_waiting_and_refuses_new_work(
    make_queue: QueueFactory, face: PreparedFace, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue, _ = make_queue()

    def broken_pick(max_size: int) -> list[object]:
        raise RuntimeError("scheduler bug")

    monkeypatch.setattr(queue._line.scheduler, "pick", broken_pick)
    with caplog.at_level(logging.CRITICAL, logger="mmpp.inference.queue"):
        async with queue:
            handle = queue.submit(face, "tiny-style", user_id=1, guild_id=1)
            outcome = await asyncio.wait_for(handle.outcome(), timeout=5)
            assert isinstance(outcome, Failed) and outcome.code == "queue_stopped"
            assert not queue.accepting
            with pytest.raises(QueueClosed):
                queue.submit(face, "tiny-style", user_id=2, guild_id=1)
    assert any(r.levelno == logging.CRITICAL and "GPU worker stopped" in r.message for r in caplog.records)
