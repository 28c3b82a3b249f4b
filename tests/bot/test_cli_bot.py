"""`mmpp bot` as an operator runs it: bot.env in the working folder, Ctrl-C to stop."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.discord_standin import StandIn
from tests.discord_standin.harness import mmpp_bot_process


async def test_mmpp_bot_serves_members_and_stops_gracefully_on_ctrl_c(
    tmp_path: Path, bot_model_dir: Path, selfie_bytes: bytes
) -> None:
    async with StandIn() as standin:
        guild = standin.add_guild("Art Club")
        member = standin.add_member(guild, standin.add_user("ana"))
        async with mmpp_bot_process(standin, tmp_path, bot_model_dir, DEFAULT_STYLE="tiny-style") as bot:
            # Commands sync before the gateway connects, and the harness waited for the connection.
            await standin.wait_for_commands("profile", "style", timeout=10)
            interaction = await standin.send_slash_command(
                "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}
            )
            await interaction.wait_for_final_file(timeout=60)
            bot.send_signal(signal.SIGINT)
            returncode = await asyncio.wait_for(bot.wait(), timeout=60)
        output = (tmp_path / "bot.log").read_text()
    assert returncode == 0, output
    assert "commands synced" in output and "queue stopped" in output and "Traceback" not in output
    assert standin.token not in output
    # The SQLite default was created and migrated on first start, with no manual step.
    engine = create_engine(f"sqlite:///{tmp_path / 'mmpp.sqlite3'}")
    with engine.connect() as connection:
        assert connection.execute(text("select outcome from generation_log")).scalars().all() == ["delivered"]
    engine.dispose()
