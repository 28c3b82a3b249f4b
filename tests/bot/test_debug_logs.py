"""No secret in any log at any level: the real `mmpp bot` and a real `mmpp worker` at LOG_LEVEL=DEBUG,
through the Redis backend (a password on the server, QUEUE_SECRET on both), a portrait, a restart and a
refusal. Whatever reads these logs (an operator pasting them into an issue, a log shipper) must find no
credential: not the bot token, no member's interaction token (15 minutes of posting as the bot), no
attachment URL (a member's selfie), not the Redis password, not the queue key."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from skimage import data as skdata

from mmpp.logs import configure_logging
from tests.bot.test_profile import custom_id
from tests.bot.test_secrets import restore_logging  # noqa: F401 - a fixture
from tests.conftest import encode
from tests.discord_standin import InteractionRecord, StandIn
from tests.discord_standin.harness import mmpp_bot_process
from tests.redis_server import RedisProcess, worker_process


@pytest.mark.usefixtures("restore_logging")
def test_at_debug_the_libraries_that_carry_secrets_stay_quiet_and_mmpp_does_not() -> None:
    configure_logging("DEBUG", "text")
    for name in ("aiosqlite", "sqlalchemy.engine.Engine", "asyncpg", "redis", "arq.worker", "aiohttp.client",
                 "discord.gateway", "discord.state", "discord.client", "httpx", "urllib3"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
    assert not logging.getLogger("sqlalchemy.engine.Engine").isEnabledFor(logging.INFO)  # statements + parameters
    assert logging.getLogger("mmpp.bot.uploads.decoding").isEnabledFor(logging.DEBUG)
    # discord.http writes whole response bodies at DEBUG; the webhook logger only method, path (its token
    # blanked by the scrubber) and status, which helps an operator.
    assert not logging.getLogger("discord.http").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("discord.webhook.async_").isEnabledFor(logging.DEBUG)


def start_worker(folder: Path, model_dir: Path, **env_lines: str) -> subprocess.Popen[bytes]:
    return worker_process(model_dir, folder, "w1", log=folder / "worker.log", strip=("QUEUE_", "REDIS_", "LOG_"),
                          **env_lines)


async def log_says(log: Path, words: str, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while words not in log.read_text(errors="replace"):  # noqa: ASYNC110, ASYNC240 - a small file
            await asyncio.sleep(0.1)


async def graceful_stop(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.wait(), 60)


async def test_debug_logs_of_bot_and_worker_hold_no_secret(tmp_path: Path, bot_model_dir: Path, selfie_bytes: bytes,
                                                            private_redis: RedisProcess) -> None:
    queue_secret = Fernet.generate_key().decode()
    settings = {"QUEUE_BACKEND": "redis", "REDIS_URL": private_redis.url, "QUEUE_SECRET": queue_secret,
                "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "text"}
    worker = start_worker(tmp_path, bot_model_dir, **settings)
    logs: list[str] = []
    interactions: list[InteractionRecord] = []
    try:
        async with StandIn() as standin:
            # Tokens unlike today's (Discord documents them as opaque): none may rely on their shape to hide.
            standin.state.interaction_token_prefix = "opaque-"
            guild = standin.add_guild("Art Club")
            member = standin.add_member(guild, standin.add_user("ana"))
            async with mmpp_bot_process(standin, tmp_path, bot_model_dir, DEVICE="cpu", DTYPE="float32",
                                        **settings) as bot:
                await log_says(tmp_path / "bot.log", "worker joined", timeout=180)
                interactions.append(await standin.send_slash_command(
                    "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}))
                final = await interactions[-1].wait_for_final_file(timeout=120)
                # Posted for the channel to see: the post's attachment has a CDN URL of its own.
                post = await standin.send_component(final, custom_id(final, "mmpp:post"), user=member)
                await post.wait_for_message()
                assert standin.public_messages()
                await graceful_stop(bot)
            logs.append((tmp_path / "bot.log").read_text(errors="replace"))
            async with mmpp_bot_process(standin, tmp_path, bot_model_dir, DEVICE="cpu", DTYPE="float32",
                                        **settings) as bot:
                interactions.append(await standin.send_slash_command(
                    "profile", user=member, attachments={"selfie": ("sea.jpg", encode(skdata.coffee()))}))
                await interactions[-1].wait_for_content("couldn't find a face", timeout=120)
                await graceful_stop(bot)
            logs.append((tmp_path / "bot.log").read_text(errors="replace"))
            bot_token, cdn = standin.token, standin.cdn_base
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    logs.append((tmp_path / "worker.log").read_text(errors="replace"))
    output = "\n".join(logs)

    # At DEBUG indeed (so this test would see a leak): discord.py's REST lines, tokens blanked.
    assert re.search(r" D discord\.[a-z_.]+ .*/interactions/\d+/\*\*\*/callback", output)
    assert " D " in logs[2] or " I " in logs[2], "the worker logged"
    secrets = {
        "bot token": bot_token, "Redis password": private_redis.password or "", "queue secret": queue_secret,
        **{f"interaction token {n}": i.token for n, i in enumerate(interactions)},
        **{f"its first 24 characters {n}": i.token[:24] for n, i in enumerate(interactions)},
        "an attachment URL": f"{cdn}/", "an attachment path": "/attachments/",
    }
    leaks = {what: [line[:300] for line in output.splitlines() if value in line][:3]
             for what, value in secrets.items() if value and value in output}
    assert not leaks, leaks
