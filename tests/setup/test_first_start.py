"""A fresh install's first start, as a new server owner meets it: `./run bot` on a clone with only a token,
a token that Discord refuses, and a typo in bot.env."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import discord

from bot.invite import needed_permissions, user_install_url
from tests.discord_standin import StandIn
from tests.setup.conftest import REPO, run_env


async def _read_until(stream: asyncio.StreamReader, needle: str, seen: list[str], timeout: float) -> bool:
    async with asyncio.timeout(timeout):
        while line := await stream.readline():
            seen.append(line.decode(errors="replace"))
            if needle in seen[-1]:
                return True
    return False


def _bot_env(standin: StandIn, model_dir: Path, tmp_path: Path, token: str) -> dict[str, str]:
    """Only the token; the rest points the bot at the stand-in (its "Discord") and the tiny model
    (the hub is out of reach here). BUILTIN_STYLES as on a fresh install."""
    return {
        "DISCORD_TOKEN": token, "DISCORD_API_BASE": standin.api_base, "DISCORD_GATEWAY_URL": standin.gateway_url,
        "DISCORD_CDN_BASE": standin.cdn_base, "MODEL_DIR": str(model_dir), "DEVICE": "cpu",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'mmpp.sqlite3'}", "BUILTIN_STYLES": "true",
    }


async def test_run_bot_on_a_fresh_clone_reaches_connected_and_logs_the_invite(
    tmp_path: Path, tiny_model_dir: Path, fake_venv: Path
) -> None:
    async with StandIn() as standin:
        env = run_env(fake_venv, _bot_env(standin, tiny_model_dir, tmp_path, standin.token))
        bot = await asyncio.create_subprocess_exec(
            str(REPO / "run"), "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
        )
        lines: list[str] = []
        try:
            assert bot.stderr is not None
            assert await _read_until(bot.stderr, " connected ", lines, timeout=180), "".join(lines[-20:])
            bot.send_signal(signal.SIGINT)
            async with asyncio.timeout(60):
                rest = (await bot.stderr.read()).decode()
                await bot.wait()
        finally:
            if bot.returncode is None:
                bot.kill()
                await bot.wait()
    text = "".join(lines) + rest
    assert bot.returncode == 0, text
    assert "run: installing" not in text  # the stamp matched: nothing installed the second time
    # DEFAULT_STYLE was never set: its default is a built-in that exists.
    assert "default style missing" not in text and "simpsons" in text
    [accepted] = [line for line in lines if "token accepted" in line]
    assert accepted.index("token accepted") < text.index("pipeline loaded")  # checked before the models
    invite = next(word for word in accepted.split() if word.startswith("invite="))
    query = parse_qs(urlsplit(invite.removeprefix("invite=")).query)
    assert query["client_id"] == [str(standin.application_id)]
    assert query["scope"] == ["bot applications.commands"]
    assert query["permissions"] == [str(needed_permissions().value)]
    assert standin.token not in text


def test_the_user_install_link_adds_only_the_commands_to_a_members_account() -> None:
    query = parse_qs(urlsplit(user_install_url(1234)).query)
    assert query == {"client_id": ["1234"], "scope": ["applications.commands"], "integration_type": ["1"]}


def test_the_invite_asks_only_for_what_the_bot_uses() -> None:
    needed = needed_permissions()
    assert needed.send_messages and needed.attach_files and needed.embed_links and needed.view_channel
    assert not (needed.administrator or needed.manage_guild or needed.manage_messages or needed.mention_everyone)
    assert needed.value == discord.Permissions(
        view_channel=True, send_messages=True, send_messages_in_threads=True, embed_links=True, attach_files=True
    ).value


async def test_a_wrong_token_stops_run_bot_before_any_model_loads(
    tmp_path: Path, tiny_model_dir: Path, fake_venv: Path
) -> None:
    wrong = "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs"
    async with StandIn() as standin:
        env = run_env(fake_venv, _bot_env(standin, tiny_model_dir, tmp_path, wrong))
        done = await asyncio.to_thread(
            subprocess.run, [str(REPO / "run"), "bot"], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("mmpp: Discord refused the token. Copy it again from "
                                                           "https://discord.com/developers/applications")
    assert "pipeline loaded" not in done.stderr and "Traceback" not in done.stderr
    assert wrong not in done.stderr


def test_a_typo_in_bot_env_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / "bot.env").write_text("DISCORD_TOKEN=MTIz.NDU2.Nzg5\nQUEUE_CAPACITY=lots\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "QUEUE_"))}
    done = subprocess.run([sys.executable, "-m", "mmpp.cli", "bot"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "mmpp: Setting QUEUE_CAPACITY (bot.env or the environment) is 'lots': expected a whole number, like 100."
    )
