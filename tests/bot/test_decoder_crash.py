"""Decode workers that die (the OOM killer, a decoder crashing on a hostile file): the bot rebuilds
its pool and decodes on; only the member whose file keeps killing it hears that it is damaged."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from tests.bot.conftest import World
from tests.bot.test_profile import profile
from tests.discord_standin import BotAction

POISON = b"POISON-PILL"


def decode_workers(world: World) -> list[int]:
    pool = world.services.decoder._pool
    return list(pool._processes or {}) if pool is not None else []  # type: ignore[attr-defined]


async def test_after_a_decode_worker_is_killed_profile_still_works(world: World, selfie_bytes: bytes) -> None:
    victims = decode_workers(world)
    assert victims
    # Held before the kill: a process reaped at once could no longer be looked up afterwards.
    victim = psutil.Process(victims[0])
    os.kill(victims[0], signal.SIGKILL)
    await asyncio.to_thread(psutil.wait_procs, [victim], 10)
    interactions = [await profile(world, m, selfie_bytes) for m in world.members]
    finals = [await i.wait_for_final_file(timeout=90) for i in interactions]
    assert all(f.files[0].filename == "portrait-tiny-style.png" for f in finals)
    assert not [a for i in interactions for a in i.actions if "went wrong" in (a.content or "")]


# Loaded by every decode process the bot starts while a test holds `poison_decoders`: its JPEG decoder
# crashes (SIGSEGV, as a native decoder would) on a file that carries POISON, and takes a moment on
# every file, so the uploads sent together are surely decoding together when one of them crashes it.
CRASHING_DECODER = f"""
import os, signal, time
from PIL import JpegImagePlugin

_open = JpegImagePlugin.JpegImageFile._open

def _crashing_open(self):
    where = self.fp.tell()
    body = self.fp.read()
    self.fp.seek(where)
    if {POISON!r} in body:
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(0.6)
    _open(self)

JpegImagePlugin.JpegImageFile._open = _crashing_open
"""


@pytest.fixture
async def poison_decoders(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[bytes]:
    """A decoder that a file crashes (the file is what this yields), in the bot's decode processes."""
    hook = tmp_path / "crashing-decoder"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASHING_DECODER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    decoder = world.services.decoder
    decoder.close()
    await decoder.start()  # spawned now, with the hook
    yield POISON


async def test_a_file_that_kills_every_decode_worker_is_refused_as_damaged(
    world: World, selfie_bytes: bytes, poison_decoders: bytes
) -> None:
    member = world.members[0]
    interaction = await profile(world, member, selfie_bytes + poison_decoders)
    answer = await interaction.wait_for_message(lambda a: a.ephemeral, timeout=60)
    assert "looks damaged or incomplete" in (answer.content or "")
    # Nothing else is lost: the next upload is decoded by a fresh pool.
    again = await profile(world, world.members[1], selfie_bytes)
    final = await again.wait_for_final_file(timeout=90)
    assert final.files[0].filename == "portrait-tiny-style.png"


def told(action: BotAction) -> bool:
    """The portrait, or the line that refuses the picture: whichever comes, the member's outcome."""
    return any(f.filename.startswith("portrait") for f in action.files) or "damaged" in (action.content or "")


async def test_a_poison_file_hurts_only_its_sender(world: World, selfie_bytes: bytes, poison_decoders: bytes) -> None:
    """Honest uploads decoding beside a file that crashes the decoder, in the pool it kills and the one
    after, are each portrayed; only the sender hears "damaged", and only the sender is counted."""
    honest = [world.members[1], world.members[2], world.admin]
    sent = [await profile(world, m, selfie_bytes) for m in honest[:1]]
    poisoned = await profile(world, world.members[0], selfie_bytes + poison_decoders)
    sent += [await profile(world, m, selfie_bytes) for m in honest[1:]]
    answer = await poisoned.wait_for_message(lambda a: a.ephemeral, timeout=90)
    assert "looks damaged or incomplete" in (answer.content or "")
    outcomes = [await i.wait_for_message(told, timeout=120) for i in sent]
    assert [o.files[0].filename if o.files else o.content for o in outcomes] == ["portrait-tiny-style.png"] * 3
    assert len(world.services.refused_uploads) == 1  # the sender's one refusal, no one else's
