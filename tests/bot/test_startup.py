"""Starting and stopping the bot: one clear line for a start that cannot work, a graceful stop,
and a token that never reaches a log line."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmpp.bot.app.discord_endpoints import reset_endpoints
from mmpp.bot.app.invite import needed_permissions, user_install_url
from mmpp.bot.app.runtime import BotRuntime, BotStartError
from mmpp.inference.testing.recording import RecordingEngine
from mmpp.logs import _Formatter
from mmpp.settings import load_settings
from tests.bot.conftest import World, bot_settings
from tests.discord_standin import StandIn


def run_bot_cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DISCORD_", "DATABASE_", "MODEL_DIR", "MMPP_ENV_FILE"))}
    return subprocess.run(
        [sys.executable, "-m", "mmpp.cli", "bot", *args], cwd=tmp_path, env={**clean, **env},
        capture_output=True, text=True, timeout=120,
    )


def run_bot_cli_global(tmp_path: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    """`mmpp [options] bot`: --env-file is the command's own option, before the subcommand."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DISCORD_", "DATABASE_", "MODEL_DIR", "MMPP_ENV_FILE"))}
    return subprocess.run(
        [sys.executable, "-m", "mmpp.cli", *options, "bot"], cwd=tmp_path, env={**clean, **env},
        capture_output=True, text=True, timeout=120,
    )


def test_a_missing_token_stops_the_start_with_one_line(tmp_path: Path) -> None:
    done = run_bot_cli(tmp_path, {})
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"mmpp: DISCORD_TOKEN is not set (read bot.env ({tmp_path / 'bot.env'}, which does not exist) and the "
        "environment). Get your bot's token at https://discord.com/developers/applications "
        "(your app > Bot > Reset Token) and put it in bot.env or the environment."
    )


@pytest.mark.parametrize("how", ["--env-file", "MMPP_ENV_FILE"])
def test_the_missing_token_line_names_the_env_file_given(tmp_path: Path, how: str) -> None:
    settings_file = tmp_path / "etc" / "mmpp.env"
    settings_file.parent.mkdir()
    settings_file.write_text("LOG_LEVEL=INFO\n")
    (tmp_path / "bot.env").write_text("DISCORD_TOKEN=MTIz.NDU2.Nzg5\n")  # not read: another file was named
    if how == "--env-file":
        done = run_bot_cli_global(tmp_path, {}, "--env-file", str(settings_file))
    else:
        done = run_bot_cli_global(tmp_path, {"MMPP_ENV_FILE": str(settings_file)})
    assert done.returncode == 1
    assert done.stderr.strip().startswith(
        f"mmpp: DISCORD_TOKEN is not set (read {settings_file} ({settings_file}) and the environment). "
    )
    assert done.stderr.strip().endswith(f"and put it in {settings_file} or the environment.")


async def test_an_unreachable_database_stops_the_start_with_one_line(tmp_path: Path, bot_model_dir: Path) -> None:
    async with StandIn() as standin:  # the token check comes first, so Discord (the stand-in) must answer
        (tmp_path / "bot.env").write_text(
            f"DISCORD_TOKEN={standin.token}\nDISCORD_API_BASE={standin.api_base}\n"
            "DATABASE_URL=postgresql+asyncpg://nobody@127.0.0.1:1/mmpp\n"
        )
        done = await asyncio.to_thread(run_bot_cli, tmp_path, {}, "--model-dir", str(bot_model_dir))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mmpp: ") and "127.0.0.1:1" in last
    assert standin.token not in done.stderr


async def test_a_missing_model_stops_the_start(tmp_path: Path, bot_model_dir: Path) -> None:
    async with StandIn() as standin:
        settings = bot_settings(standin, tmp_path / "no-such-model", tmp_path)
        with pytest.raises(Exception, match=r"Model folder .*no-such-model does not exist"):
            await BotRuntime(settings).start()
    reset_endpoints()


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_every_start_gives_the_invite_link(
    log_format: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    async with StandIn() as standin:
        # No model folder: the start stops right after the token check, which is where the link comes.
        settings = bot_settings(standin, tmp_path / "no-such-model", tmp_path, log_format=log_format)
        with caplog.at_level(logging.INFO), pytest.raises(Exception, match="no-such-model does not exist"):
            await BotRuntime(settings).start()
    reset_endpoints()
    url = ("https://discord.com/oauth2/authorize?client_id=" f"{standin.application_id}"
           f"&scope=bot+applications.commands&permissions={needed_permissions().value}")
    [accepted] = [r for r in caplog.records if r.getMessage() == "token accepted"]
    lines = capsys.readouterr().err.splitlines()
    if log_format == "json":
        assert accepted.fields["invite"] == url and url not in lines  # a field of the record, as before
    else:
        assert url in lines  # a line of its own, that a terminal makes clickable
        assert user_install_url(standin.application_id) in lines  # and the user-install one
        assert "invite" not in accepted.fields  # said once


async def test_mmpp_invite_prints_the_link_and_starts_nothing(tmp_path: Path) -> None:
    async with StandIn() as standin:
        env = {"DISCORD_TOKEN": standin.token, "DISCORD_API_BASE": standin.api_base}
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "MODEL_DIR"))}
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mmpp.cli", "invite", cwd=tmp_path, env={**clean, **env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(done.communicate(), 60)
        assert done.returncode == 0, err.decode()
        assert out.decode() == (
            f"https://discord.com/oauth2/authorize?client_id={standin.application_id}"
            f"&scope=bot+applications.commands&permissions={needed_permissions().value}\n"
            f"{user_install_url(standin.application_id)}\n"
        )
        assert not standin.gateway.sessions  # no bot started; no model either (none is configured)
        assert not (tmp_path / "mmpp.sqlite3").exists()
    assert standin.token not in err.decode()


async def test_data_dir_holds_the_database_and_the_start_line_says_where_everything_lives(
    tmp_path: Path, bot_model_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "var" / "mmpp"  # does not exist yet: the start makes it
    env_file = tmp_path / "etc" / "mmpp.env"
    env_file.parent.mkdir()
    env_file.write_text(f"DATA_DIR={data_dir}\n")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "models"))
    async with StandIn() as standin:
        # The stand-in's settings, except the database: DATA_DIR from the env file places it.
        given = bot_settings(standin, bot_model_dir, tmp_path).model_dump(exclude_unset=True, exclude={"database_url"})
        settings = load_settings(env_file, **{**given, "model_dir": None, **bot_overrides_for_hub(bot_model_dir)})
        assert settings.database_url == f"sqlite+aiosqlite:///{data_dir / 'mmpp.sqlite3'}"
        runtime = BotRuntime(settings, client_options={"guild_ready_timeout": 0.05})
        try:
            with caplog.at_level(logging.INFO):
                await runtime.start()
        finally:
            await runtime.stop()
    reset_endpoints()
    assert (data_dir / "mmpp.sqlite3").is_file() and not (tmp_path / "mmpp.sqlite3").exists()
    [starting] = [r for r in caplog.records if r.getMessage() == "starting"]
    assert starting.fields["env_file"] == f"{env_file} ({env_file}) and the environment"
    assert starting.fields["database"] == f"sqlite+aiosqlite:///{data_dir / 'mmpp.sqlite3'}"
    assert starting.fields["model_cache"] == str(tmp_path / "models" / "hub")


def bot_overrides_for_hub(model_dir: Path) -> dict[str, object]:
    """The tiny model's folders named one by one, as hub sources are: no MODEL_DIR, so the start line
    names the hub cache."""
    from dataclasses import asdict

    from mmpp.model_sources import ModelSources

    return asdict(ModelSources.from_model_dir(model_dir))


async def test_a_device_this_machine_lacks_stops_the_start_before_anything(tmp_path: Path, bot_model_dir: Path) -> None:
    import torch

    from mmpp.inference.device import DeviceUnavailable

    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, on any machine
    async with StandIn() as standin:
        settings = bot_settings(standin, bot_model_dir, tmp_path, device=missing)
        with pytest.raises(DeviceUnavailable, match=f"^DEVICE={missing}, but this machine has no such device"):
            await BotRuntime(settings).start()
    reset_endpoints()
    assert not (tmp_path / "mmpp.sqlite3").exists() and not standin.gateway.sessions


async def test_a_malformed_api_base_is_named(tmp_path: Path, bot_model_dir: Path) -> None:
    async with StandIn() as standin:
        settings = bot_settings(standin, bot_model_dir, tmp_path, discord_api_base="proxy:8080")
        with pytest.raises(BotStartError, match="discord_api_base must be an http"):
            await BotRuntime(settings).start()
    reset_endpoints()


async def test_an_unreachable_discord_is_named(tmp_path: Path, bot_model_dir: Path) -> None:
    async with StandIn() as standin:
        settings = bot_settings(standin, bot_model_dir, tmp_path, discord_api_base="http://127.0.0.1:1")
        runtime = BotRuntime(settings)
        try:
            with pytest.raises(BotStartError, match=r"Cannot reach Discord at 127\.0\.0\.1"):
                await runtime.start()  # the token check runs before the models load
        finally:
            await runtime.stop()
            reset_endpoints()
        assert runtime.services is None


async def test_a_wrong_token_is_named_and_never_logged(tmp_path: Path, bot_model_dir: Path,
                                                      log_lines: io.StringIO) -> None:
    wrong = "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs"
    async with StandIn() as standin:
        settings = bot_settings(standin, bot_model_dir, tmp_path, discord_token=wrong)
        runtime = BotRuntime(settings, client_options={"guild_ready_timeout": 0.05})
        try:
            with pytest.raises(BotStartError, match="Discord refused the token"):
                await runtime.start()
        finally:
            await runtime.stop()
            reset_endpoints()
    # Stopped before the models: nothing slow ran for a token that cannot work.
    assert "pipeline loaded" not in log_lines.getvalue() and "starting" not in log_lines.getvalue()
    assert wrong not in log_lines.getvalue()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything logged at DEBUG, through the bot's own formatter, as an operator would see it."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(_Formatter(as_json=False))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(old_level)


async def test_the_token_never_appears_in_logs(log_lines: io.StringIO, world: World, selfie_bytes: bytes) -> None:
    interaction = await world.standin.send_slash_command(
        "profile", user=world.members[0], attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    await interaction.wait_for_final_file(timeout=60)
    text = log_lines.getvalue()
    assert "job queued" in text and "batch generated" in text and "commands synced" in text
    assert world.standin.token not in text


async def test_stopping_drains_the_queue_and_tells_who_waited(
    world: World, selfie_bytes: bytes, engine_gate: RecordingEngine
) -> None:
    running = await world.standin.send_slash_command(
        "profile", user=world.members[0], attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    await engine_gate.wait_for_calls(1)
    waiting = await world.standin.send_slash_command(
        "profile", user=world.members[1], attachments={"selfie": ("me.jpg", selfie_bytes)}
    )
    await waiting.wait_for_content("You're next", timeout=30)

    stopping = asyncio.create_task(world.runtime.stop())
    told = await waiting.wait_for_content("restarting", timeout=30)
    assert told.ephemeral
    engine_gate.release()
    await running.wait_for_final_file(timeout=60)  # the running job finishes within the grace time
    await stopping
    assert world.runtime.services is None
