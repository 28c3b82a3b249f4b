"""Workers on machines whose clocks are wrong: a real `mmpp worker` an hour ahead, then one an hour
behind, behind one bot. No wall clock of another machine decides whether a member is served."""

from __future__ import annotations

import pytest

from tests.scale.conftest import Cluster, is_answer, profile

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
