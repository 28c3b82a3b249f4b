"""A fresh install's first start when it cannot work, as a new server owner meets it: a token that
Discord refuses, and a typo in bot.env. (The start that works is `test_as_shipped`'s.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import discord

from mmpp.bot.app.invite import needed_permissions, user_install_url
from tests.discord_standin import StandIn
from tests.setup.conftest import REPO, run_env


def _bot_env(standin: StandIn, model_dir: Path, tmp_path: Path, token: str) -> dict[str, str]:
    """Only the token; the rest points the bot at the stand-in (its "Discord") and the tiny model
    (the hub is out of reach here). A start on the shipped defaults is `test_as_shipped`'s."""
    return {
        "DISCORD_TOKEN": token, "DISCORD_API_BASE": standin.api_base, "DISCORD_GATEWAY_URL": standin.gateway_url,
        "DISCORD_CDN_BASE": standin.cdn_base, "MODEL_DIR": str(model_dir),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'mmpp.sqlite3'}",
    }


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
