"""A bot whose workers draw (`QUEUE_BACKEND=redis` without `DEVICES`) never loads torch, diffusers or
transformers, not even while it serves a portrait, and holds little memory; a bot that draws asks Discord
about its token before it loads them.

Each bot here is the real `mmpp bot` in a fresh interpreter run with `-X importtime`, which writes every
module the process imports as it imports it: the test reads what the bot loaded, through READY and a
graceful stop, from the interpreter itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mmpp.inference.engine import Engine
from mmpp.inference.model_files import model_resolution
from mmpp.inference.queue.remote.protocol import catalog_fingerprint
from mmpp.inference.queue.remote.worker import RemoteWorker
from mmpp.settings import load_settings
from tests.bot.bot_process import ML_STACK, BotProcess, bot_env
from tests.discord_standin import StandIn
from tests.redis_server import QUEUE_SECRET, RedisProcess

WRONG_TOKEN = "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs"
# What an operator may count on for a bot that draws nothing, once READY (decode processes apart).
MAX_RSS_MB = 250


def loaded_ml(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in ML_STACK}


async def test_a_bot_that_does_not_draw_never_imports_the_ml_stack(
    tmp_path: Path, bot_model_dir: Path, bot_engine: Engine, private_redis: RedisProcess, selfie_bytes: bytes
) -> None:
    # A worker in this process draws, so the bot's whole path (decode, face, queue, result, reply) runs.
    settings = load_settings(None, model_dir=bot_model_dir, device="cpu", dtype="float32", queue_backend="redis",
                             redis_url=private_redis.url, queue_secret=QUEUE_SECRET)
    worker = RemoteWorker(bot_engine, settings, "light", catalog_fingerprint(bot_engine.catalog, bot_engine.resolution))
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    try:
        async with StandIn() as standin:
            guild = standin.add_guild("Art Club")
            member = standin.add_member(guild, standin.add_user("ada"))
            env = bot_env(standin, bot_model_dir, tmp_path, QUEUE_BACKEND="redis", REDIS_URL=private_redis.url,
                          QUEUE_SECRET=QUEUE_SECRET, DEFAULT_STYLE="tiny-style")
            bot = await BotProcess.launch(env, tmp_path, ["-X", "importtime"])
            try:
                await bot.wait_for_event("connected", timeout=120)
                await standin.wait_for_commands("profile", "style")
                rss = bot.rss_mb()
                interaction = await standin.send_slash_command(
                    "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}
                )
                await interaction.wait_for_final_file(timeout=120)
            finally:
                returncode = await bot.stop()
    finally:
        stop.set()
        await asyncio.wait_for(serving, 30)
    assert returncode == 0, "\n".join(bot.lines[-20:])
    imported = bot.imported()
    assert {"discord", "mmpp.bot.app.app", "mmpp.inference.queue.remote.dispatch", "cv2"} <= imported
    assert loaded_ml(imported) == set()
    assert rss < MAX_RSS_MB, f"{rss:.0f} MB resident after READY"


async def test_a_drawing_bot_checks_the_token_before_it_loads_the_ml_stack(tmp_path: Path, bot_model_dir: Path) -> None:
    async with StandIn() as standin:
        env = {**bot_env(standin, bot_model_dir, tmp_path), "DISCORD_TOKEN": WRONG_TOKEN}
        bot = await BotProcess.launch(env, tmp_path, ["-X", "importtime"])
        returncode = await bot.finish(timeout=120)
    assert returncode == 1
    assert any(line.startswith("mmpp: Discord refused the token.") for line in bot.lines)
    assert loaded_ml(bot.imported()) == set()


def test_the_bot_prepares_faces_at_the_size_the_workers_draw(bot_engine: Engine, bot_model_dir: Path) -> None:
    # Read from the config files without diffusers; a wrong size would refuse every worker's fingerprint.
    settings = load_settings(None, model_dir=bot_model_dir)
    assert model_resolution(settings) == bot_engine.resolution
