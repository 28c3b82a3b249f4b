"""The unlinkable guard in the real worker, local and remote: a portrait that matches the selfie is
drawn again (new seed, weaker IP-Adapter, at most two more tries), and one that still matches says so.

The tiny model's noise never looks like anyone, so the engine here draws for real (steps, cancel)
and then hands back the selfie photo itself as its "portrait" for the first `linkable_calls` calls.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from PIL import Image, ImageOps
from pydantic import SecretStr

from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.engine import Engine, GenerationRequest, GenerationResult
from mmpp.inference.queue import Done
from mmpp.inference.queue.unlinkable import REDRAW_IP_FACTORS
from mmpp.inference.testing.recording import RecordingEngine, Swap
from mmpp.settings import Settings
from tests.queue.conftest import QueueFactory, collect
from tests.queue.test_remote import open_remote


def as_the_selfie(results: list[GenerationResult], mirrored: Image.Image) -> list[GenerationResult]:
    """The engine's results with every drawn picture swapped for `mirrored`, the member's own photo
    mirrored: a portrait that face matching links to the selfie."""
    return [r if r.image is None else replace(r, image=mirrored) for r in results]


def selfie_swap(selfie: Image.Image, linkable_calls: int) -> Swap:
    """A RecordingEngine swap: the first `linkable_calls` calls' results become the selfie, mirrored."""
    mirrored = ImageOps.mirror(selfie)

    def swap(call: int, results: list[GenerationResult]) -> list[GenerationResult]:
        return as_the_selfie(results, mirrored) if call < linkable_calls else results

    return swap


async def test_a_linkable_portrait_is_redrawn_until_it_is_not(
    make_queue: QueueFactory, real_engine: Engine, face: PreparedFace, astronaut: Image.Image
) -> None:
    queue, engine = make_queue(swap=selfie_swap(astronaut, linkable_calls=1))
    queue.start()
    try:
        events = await collect(queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=5, steps=2))
    finally:
        await queue.shutdown(grace_s=5)
    done = events[-1]
    assert isinstance(done, Done) and not done.result.linkable
    first, second = engine.requests
    base = real_engine.catalog.get("tiny-style").definition.ip_adapter_scale
    assert first.ip_adapter_scale is None and second.ip_adapter_scale == base * REDRAW_IP_FACTORS[0]
    assert second.seed != first.seed and done.result.seed == second.seed
    # The member gets the redraw (the tiny model's picture), never the one that matched.
    assert done.result.image is not None and done.result.image.size == (64, 64)
    # What a dashboard shows: one batch of one picture, and that picture drawn again.
    assert queue.metrics.value("mmpp_worker_batches_total") == 1
    assert queue.metrics.value("mmpp_worker_picture_seconds_count") == 1
    assert queue.metrics.value("mmpp_worker_unlinkable_redraws_total") == 1


async def test_still_linkable_after_two_more_tries_says_so(
    make_queue: QueueFactory, real_engine: Engine, face: PreparedFace, astronaut: Image.Image
) -> None:
    queue, engine = make_queue(swap=selfie_swap(astronaut, linkable_calls=99))
    queue.start()
    try:
        events = await collect(queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2))
    finally:
        await queue.shutdown(grace_s=5)
    done = events[-1]
    assert isinstance(done, Done) and done.result.linkable and done.result.image is not None
    base = real_engine.catalog.get("tiny-style").definition.ip_adapter_scale
    assert [r.ip_adapter_scale for r in engine.requests] == [None, *(base * f for f in REDRAW_IP_FACTORS)]
    assert len({r.seed for r in engine.requests}) == 3


async def test_turned_off_nothing_is_redrawn_and_noise_never_fires_it(
    make_queue: QueueFactory, face: PreparedFace, astronaut: Image.Image
) -> None:
    queue, off = make_queue(swap=selfie_swap(astronaut, linkable_calls=99))
    queue.start()
    try:
        events = await collect(queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2, unlinkable=False))
        done = events[-1]
        assert isinstance(done, Done) and not done.result.linkable and len(off.requests) == 1
    finally:
        await queue.shutdown(grace_s=5)
    queue, tiny = make_queue(swap=selfie_swap(astronaut, linkable_calls=0))
    queue.start()
    try:
        events = await collect(queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2))
        done = events[-1]
        assert isinstance(done, Done) and not done.result.linkable and len(tiny.requests) == 1
    finally:
        await queue.shutdown(grace_s=5)


async def test_through_a_remote_worker_the_switch_and_the_verdict_travel(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace, astronaut: Image.Image
) -> None:
    engine = RecordingEngine(real_engine, swap=selfie_swap(astronaut, linkable_calls=99))
    settings = queue_settings.model_copy(update={"redis_url": SecretStr(redis_url)})
    async for remote in open_remote(redis_url, settings, engine):  # type: ignore[arg-type]
        events = await collect(remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2))
        done = events[-1]
        assert isinstance(done, Done) and done.result.linkable and len(engine.requests) == 3
        assert done.result.guard == "linkable" and done.result.may_link
        events = await collect(
            remote.queue.submit(face, "tiny-style", user_id=2, guild_id=1, steps=2, unlinkable=False)
        )
        done = events[-1]
        assert isinstance(done, Done) and not done.result.linkable and len(engine.requests) == 4
        # Off, it is measured all the same, and the worker says so across Redis.
        assert done.result.guard == "off" and done.result.may_link
        assert remote.leftovers() == []


def test_the_switch_travels_and_a_bot_that_predates_it_gets_the_guard(face: PreparedFace) -> None:
    from mmpp.inference.queue.remote import protocol as p
    from mmpp.inference.queue.remote import transport as t

    request = GenerationRequest(face=face, style="tiny-style", seed=1, unlinkable=False)
    batch = p.Batch("b", "n" * 32, 0.0, (p.RemoteJob("j", 0, request, False),))
    payload = t.deserialize(t.serialize(batch.to_wire()))
    [job] = p.Batch.from_wire(payload).jobs
    assert job.request.unlinkable is False
    del payload["jobs"][0]["unlinkable"]  # missing, whoever wrote it: the guard stays on (fails closed)
    [job] = p.Batch.from_wire(payload).jobs
    assert job.request.unlinkable is True


async def test_each_take_of_a_set_is_judged_and_only_the_matching_one_is_redrawn(
    make_queue: QueueFactory, face: PreparedFace, astronaut: Image.Image
) -> None:
    selfie = ImageOps.mirror(astronaut)

    def second_take_matches(call: int, results: list[GenerationResult]) -> list[GenerationResult]:
        # In the set's one call, only its second take comes back as the selfie.
        return [replace(r, image=selfie) if call == 0 and i == 1 else r for i, r in enumerate(results)]

    queue, engine = make_queue(swap=second_take_matches)
    queue.start()
    try:
        events = await collect(queue.submit(face, "tiny-style", user_id=1, guild_id=1, seed=5, steps=2, count=2))
    finally:
        await queue.shutdown(grace_s=5)
    done = events[-1]
    assert isinstance(done, Done) and len(done.results) == 2
    first, second, redraw = engine.requests
    assert redraw.seed not in (first.seed, second.seed) and redraw.ip_adapter_scale is not None
    # The first take is kept as drawn; the second is the redraw, and neither is the selfie.
    assert done.results[0].seed == first.seed and done.results[1].seed == redraw.seed
    assert all(r.image is not None and r.image.size == (64, 64) and not r.linkable for r in done.results)


async def test_an_error_while_measuring_fails_closed(
    make_queue: QueueFactory, face: PreparedFace, astronaut: Image.Image,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broken measurement never passes as "unlinkable": the portrait is delivered, marked unmeasured."""
    from mmpp.inference import likeness

    def broken(image: Image.Image, *, face_crop: bool = False) -> likeness.Descriptor | None:
        raise RuntimeError("dlib fell over")

    monkeypatch.setattr(likeness, "descriptor", broken)
    queue, engine = make_queue(swap=selfie_swap(astronaut, linkable_calls=99))
    queue.start()
    try:
        events = await collect(queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2))
    finally:
        await queue.shutdown(grace_s=5)
    done = events[-1]
    assert isinstance(done, Done) and done.result.image is not None and len(engine.requests) == 1
    assert done.result.guard == "unmeasured" and done.result.may_link


async def test_with_the_guard_off_a_matching_portrait_is_measured_but_not_redrawn(
    make_queue: QueueFactory, face: PreparedFace, astronaut: Image.Image
) -> None:
    queue, engine = make_queue(swap=selfie_swap(astronaut, linkable_calls=99))
    queue.start()
    try:
        matching = (await collect(queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2,
                                               unlinkable=False)))[-1]
    finally:
        await queue.shutdown(grace_s=5)
    assert isinstance(matching, Done) and len(engine.requests) == 1
    assert matching.result.guard == "off" and matching.result.may_link and not matching.result.linkable
    queue, _ = make_queue(swap=selfie_swap(astronaut, linkable_calls=0))
    queue.start()
    try:
        tiny = (await collect(queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2)))[-1]
    finally:
        await queue.shutdown(grace_s=5)
    assert isinstance(tiny, Done) and tiny.result.guard == "passed" and not tiny.result.may_link
