"""Through a remote worker too, a portrait the safety check flags never leaves the GPU machine."""

from __future__ import annotations

import torch

from mmpp.inference.conditioning import PreparedFace
from mmpp.inference.engine import Engine
from mmpp.inference.queue import Done, Step
from mmpp.settings import Settings
from tests.queue.conftest import collect
from tests.queue.test_remote import open_remote


async def test_a_flagged_portrait_sends_no_pixels_and_the_relaxed_level_travels(
    redis_url: str, queue_settings: Settings, real_engine: Engine, face: PreparedFace
) -> None:
    assert real_engine.safety is not None
    thresholds = real_engine.safety.model.concept_embeds_weights
    saved = thresholds.clone()
    try:
        with torch.no_grad():
            thresholds.fill_(-1.0)  # every picture now looks like nudity to the checker
        async for remote in open_remote(redis_url, queue_settings, real_engine):
            strict = await collect(remote.queue.submit(face, "tiny-style", user_id=1, guild_id=1, steps=2))
            done = strict[-1]
            assert isinstance(done, Done) and done.result.flagged and done.result.image is None
            assert not any(isinstance(e, Step) and e.preview is not None for e in strict)

            relaxed = await collect(
                remote.queue.submit(face, "tiny-style", user_id=2, guild_id=1, steps=2, safety="relaxed")
            )
            done = relaxed[-1]
            assert isinstance(done, Done) and not done.result.flagged and done.result.image is not None
            assert remote.leftovers() == []
    finally:
        with torch.no_grad():
            thresholds.copy_(saved)
