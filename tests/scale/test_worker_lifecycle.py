"""Real `mmpp worker` processes that are not ideal: on machines whose clocks are wrong (an hour
ahead, an hour behind), and one stopped with SIGTERM mid-batch. No wall clock of another machine
decides whether a member is served, and a polite stop delivers what the worker holds."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.scale.conftest import SLOW_STEPS, Cluster, is_answer, profile

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize("offset_s", [3600.0, -3600.0], ids=["an-hour-ahead", "an-hour-behind"])
async def test_a_worker_whose_clock_is_an_hour_off_draws_every_portrait(
    cluster: Cluster, selfie_bytes: bytes, offset_s: float
) -> None:
    for name in list(cluster.workers):
        cluster.stop_worker(name)
    name = "ahead" if offset_s > 0 else "behind"
    cluster.start_worker(name, clock_offset_s=offset_s)
    try:
        await cluster.wait_workers(name)
        interactions = [await profile(cluster, m, selfie_bytes) for m in cluster.members[:2]]
        answers = [await i.wait_for(is_answer, timeout=60) for i in interactions]
        assert all(a.has_files and a.files[0].filename == "portrait-tiny-style.png" for a in answers), \
            [a.content for a in answers]
        assert "expired" not in cluster.worker_log(name)
    finally:
        cluster.stop_worker(name)


async def test_a_worker_stopped_with_sigterm_mid_batch_delivers_it_exactly_once(
    cluster: Cluster, selfie_bytes: bytes
) -> None:
    for name in list(cluster.workers):
        cluster.stop_worker(name)
    cluster.start_worker("polite")
    await cluster.wait_workers("polite")
    member = cluster.members[5]
    interaction = await profile(cluster, member, selfie_bytes, style="slow-style")
    await interaction.wait_for_content(f"/{SLOW_STEPS}", timeout=60)  # drawing
    process = cluster.workers.pop("polite")
    process.send_signal(signal.SIGTERM)
    answer = await interaction.wait_for(is_answer, timeout=120)
    assert answer.has_files and answer.files[0].filename == "portrait-slow-style.png", answer.content
    assert await asyncio.to_thread(process.wait, 30) == 0  # then it left
    await asyncio.sleep(1.0)
    portraits = [a for a in interaction.actions if a.has_files and a.components]
    assert len(portraits) == 1, "exactly once"
    assert "polite" not in cluster.heartbeats()
    assert cluster.leftovers() == []
