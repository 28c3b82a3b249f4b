"""Decode workers that die (the OOM killer, a decoder crashing on a hostile file): the bot rebuilds
its pool and decodes on; only the member whose file keeps killing it hears that it is damaged."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import psutil

from tests.bot.conftest import World
from tests.bot.test_profile import profile


def decode_workers(world: World) -> list[int]:
    pool = world.services.decoder._pool
    return list(pool._processes or {}) if pool is not None else []  # type: ignore[attr-defined]


async def test_after_a_decode_worker_is_killed_profile_still_works(world: World, selfie_bytes: bytes) -> None:
    victims = decode_workers(world)
    assert victims
    os.kill(victims[0], signal.SIGKILL)
    await asyncio.to_thread(psutil.wait_procs, [psutil.Process(victims[0])], 10)
    interactions = [await profile(world, m, selfie_bytes) for m in world.members]
    finals = [await i.wait_for_final_file(timeout=90) for i in interactions]
    assert all(f.files[0].filename == "portrait-tiny-style.png" for f in finals)
    assert not [a for i in interactions for a in i.actions if "went wrong" in (a.content or "")]


async def test_a_file_that_kills_every_decode_worker_is_refused_as_damaged(world: World, selfie_bytes: bytes) -> None:
    stop = threading.Event()

    def killer() -> None:
        # Each decode worker dies as this member's file reaches it, the new pool's ones too.
        while not stop.is_set():
            for pid in decode_workers(world):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            stop.wait(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        member = world.members[0]
        interaction = await profile(world, member, selfie_bytes)
        answer = await interaction.wait_for_message(lambda a: a.ephemeral, timeout=60)
    finally:
        stop.set()
        thread.join()
    assert "looks damaged or incomplete" in (answer.content or "")
    # Nothing else is lost: the next upload is decoded by a fresh pool.
    again = await profile(world, world.members[1], selfie_bytes)
    final = await again.wait_for_final_file(timeout=90)
    assert final.files[0].filename == "portrait-tiny-style.png"
