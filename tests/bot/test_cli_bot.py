"""`mmpp bot` as an operator runs it: bot.env in the working folder, Ctrl-C to stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.discord_standin import StandIn


async def test_mmpp_bot_serves_members_and_stops_gracefully_on_ctrl_c(
    tmp_path: Path, bot_model_dir: Path, selfie_bytes: bytes
) -> None:
    async with StandIn() as standin:
        guild = standin.add_guild("Art Club")
        member = standin.add_member(guild, standin.add_user("ana"))
        (tmp_path / "bot.env").write_text(
            f"DISCORD_TOKEN={standin.token}\nDISCORD_API_BASE={standin.api_base}\n"
            f"DISCORD_GATEWAY_URL={standin.gateway_url}\nDISCORD_CDN_BASE={standin.cdn_base}\n"
            f"MODEL_DIR={bot_model_dir}\nDEFAULT_STYLE=tiny-style\nDEVICE=cpu\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "DATABASE_", "MODEL_DIR"))}
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mmpp.cli", "bot", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            await standin.wait_for_commands("profile", "style", timeout=120)
            async with asyncio.timeout(30):  # commands sync before the gateway connects
                while not standin.gateway.sessions:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            interaction = await standin.send_slash_command(
                "profile", user=member, attachments={"selfie": ("me.jpg", selfie_bytes)}
            )
            await interaction.wait_for_final_file(timeout=60)
            bot.send_signal(signal.SIGINT)
            returncode = await asyncio.wait_for(bot.wait(), timeout=60)
        finally:
            if bot.returncode is None:
                bot.kill()
                await bot.wait()
        stderr = (await bot.stderr.read()).decode()  # type: ignore[union-attr]
    assert returncode == 0, stderr
    assert "commands synced" in stderr and "queue stopped" in stderr and "Traceback" not in stderr
    assert standin.token not in stderr
    # The SQLite default was created and migrated on first start, with no manual step.
    engine = create_engine(f"sqlite:///{tmp_path / 'mmpp.sqlite3'}")
    with engine.connect() as connection:
        assert connection.execute(text("select outcome from generation_log")).scalars().all() == ["delivered"]
    engine.dispose()
