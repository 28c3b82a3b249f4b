"""Two `mmpp worker` processes behind one bot: a crowd, a cancel, a Redis restart, a kill -9.

Run in this order on one cluster (the last one kills a worker)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from mmpp.inference.queue.remote import transport as t
from tests.scale.conftest import Cluster, is_answer, profile

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_forty_members_across_four_servers_all_get_their_portrait(cluster: Cluster, selfie_bytes: bytes) -> None:
    before = {name: beat.get("batches", 0) for name, beat in cluster.heartbeats().items()}
    interactions = await asyncio.gather(*(profile(cluster, m, selfie_bytes) for m in cluster.members))
    finals = await asyncio.gather(*(i.wait_for_final_file(timeout=240) for i in interactions))
    assert all(f.files[0].filename == "portrait-tiny-style.png" for f in finals)
    await asyncio.sleep(t.HEARTBEAT_EVERY_S * 1.5)
    after = {name: beat.get("batches", 0) for name, beat in cluster.heartbeats().items()}
    # Both workers drew: the load was shared.
    assert all(after[name] > before.get(name, 0) for name in ("wA", "wB")), (before, after)
    assert cluster.leftovers() == []


async def test_cancel_stops_a_job_on_a_remote_worker(cluster: Cluster, selfie_bytes: bytes) -> None:
    interaction = await profile(cluster, cluster.dm_user, selfie_bytes, style="slow-style")
    await interaction.wait_for_content(f"/{60}", timeout=60)  # it is drawing: "step i/60"
    cancel = await cluster.standin.send_slash_command("cancel", user=cluster.dm_user)
    await cancel.wait_for_message(timeout=10)
    cancelled = await interaction.wait_for_content("cancelled", timeout=10)
    assert not any(a.has_files and a.components for a in interaction.actions)
    last_step = max(int(a.content.split("step ")[1].split("/")[0]) for a in interaction.actions
                    if a.content and "step " in a.content)
    assert last_step < 60 and cancelled
    await asyncio.sleep(0.5)
    assert cluster.leftovers() == []


async def test_a_redis_restart_mid_run_ends_every_job_with_an_answer(cluster: Cluster, selfie_bytes: bytes) -> None:
    members = cluster.members[:4]
    interactions = [await profile(cluster, m, selfie_bytes, style="slow-style") for m in members[:1]]
    await interactions[0].wait_for_content("/60", timeout=60)
    interactions += [await profile(cluster, m, selfie_bytes) for m in members[1:]]
    cluster.redis.stop()
    await asyncio.sleep(1.0)
    cluster.redis.start()  # same port, empty: everything Redis held is gone
    answers = await asyncio.gather(*(i.wait_for(is_answer, timeout=120) for i in interactions))
    assert all(is_answer(a) for a in answers)
    # Bot and workers found their way back: a new portrait works.
    await cluster.wait_workers("wA", "wB", timeout=30)
    again = await profile(cluster, cluster.members[5], selfie_bytes)
    await again.wait_for_final_file(timeout=120)


async def test_a_worker_killed_mid_job_hands_its_job_to_the_other(cluster: Cluster, selfie_bytes: bytes) -> None:
    interaction = await profile(cluster, cluster.members[12], selfie_bytes, style="slow-style")
    await interaction.wait_for_content("/60", timeout=60)
    # The victim is the worker drawing this member's job, as the bot's slots record it: a worker
    # still busy with a batch orphaned by the Redis restart before also says "busy".
    member_id = cluster.members[12].id

    def drawing() -> list[str]:
        return [slot.worker_id for slot in cluster.services.queue._crew.runners
                if any(job.user_id == member_id for job in getattr(slot, "running", []))]

    async with asyncio.timeout(10):
        while not drawing():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    victim = drawing()[0]
    os.kill(cluster.workers[victim].pid, signal.SIGKILL)
    killed = time.monotonic()
    final = await interaction.wait_for(is_answer, timeout=120)
    # Re-run by the survivor (or, with nobody left, the member is told): never silence.
    assert final.has_files, final.content
    handed_back = time.monotonic() - killed
    assert handed_back < 120
    assert victim not in cluster.heartbeats()
