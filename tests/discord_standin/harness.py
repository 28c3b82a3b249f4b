"""Run a real discord.py client, or the real `mmpp bot` process, against a `StandIn` for the
length of a block."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import discord

from mmpp.bot.app.discord_endpoints import override_endpoints

from .server import StandIn


async def wait_until_ready(client: discord.Client, runner: asyncio.Task[None], timeout: float) -> None:
    """Until `on_ready`, re-raising whatever ended `client.start()` first (a LoginFailure, say).

    Polls instead of `client.wait_until_ready()`, which raises until `login()` has set it up.
    """
    async with asyncio.timeout(timeout):
        while not client.is_ready():
            if runner.done():
                runner.result()
                raise RuntimeError("client.start() returned before the client was ready")
            await asyncio.sleep(0.01)


@asynccontextmanager
async def running_client(
    client: discord.Client,
    standin: StandIn,
    *,
    token: str | None = None,
    ready_timeout: float = 15.0,
    close_timeout: float = 10.0,
) -> AsyncIterator[discord.Client]:
    """Point discord.py at `standin`, start `client` and wait for READY; close it cleanly after.

    discord.py fires `on_ready` `guild_ready_timeout` seconds (2 by default) after the last
    GUILD_CREATE; build test clients with a small `guild_ready_timeout` to start fast.
    """
    with override_endpoints(standin.api_base, standin.gateway_url, cdn_base=standin.cdn_base):
        runner = asyncio.create_task(client.start(token or standin.token), name="standin-client")
        try:
            await wait_until_ready(client, runner, ready_timeout)
            yield client
        finally:
            await client.close()
            try:
                await asyncio.wait_for(runner, close_timeout)
            except asyncio.CancelledError:
                if not runner.cancelled():
                    raise
            except Exception:
                # start() already reported its failure to wait_until_ready; close must not mask it.
                pass


def pending_tasks(exclude: set[asyncio.Task[object]] | None = None) -> list[asyncio.Task[object]]:
    """Tasks still pending on this loop, other than the caller's and `exclude`."""
    current = asyncio.current_task()
    return [
        t for t in asyncio.all_tasks() if t is not current and not t.done() and t not in (exclude or set())
    ]


async def assert_no_leaked_tasks(before: set[asyncio.Task[object]], *, grace: float = 2.0) -> None:
    """Every task started since `before` ends within `grace` seconds, and discord.py's heartbeat
    thread stops."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while True:
        leaked = pending_tasks(before)
        threads = [
            t for t in threading.enumerate() if t.name.startswith("keep-alive-handler") and t.is_alive()
        ]
        if not leaked and not threads:
            return
        if loop.time() > deadline:
            names = [f"{t.get_name()}: {t.get_coro()!r}" for t in leaked]
            raise AssertionError(f"leaked tasks {names} and threads {threads}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def bot_subprocess(
    standin: StandIn, argv: list[str], *, cwd: Path, env: dict[str, str], ready_timeout: float = 120.0
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Any command line that ends in `mmpp bot` (`./run bot` too), run in `cwd` with exactly `env`, its
    output in `cwd/bot.log`; yielded once its gateway session with the stand-in is up, killed after."""
    with (cwd / "bot.log").open("wb") as output:
        bot = await asyncio.create_subprocess_exec(*argv, cwd=cwd, env=env, stdout=output, stderr=output)
        try:
            sessions = len(standin.gateway.sessions)
            async with asyncio.timeout(ready_timeout):
                while len(standin.gateway.sessions) <= sessions:
                    if bot.returncode is not None:
                        raise RuntimeError(f"{' '.join(argv)} exited with {bot.returncode}: {cwd / 'bot.log'}")
                    await asyncio.sleep(0.05)
            yield bot
        finally:
            if bot.returncode is None:
                bot.kill()
                await bot.wait()


@asynccontextmanager
async def mmpp_bot_process(
    standin: StandIn, folder: Path, model_dir: Path, *, ready_timeout: float = 120.0, **env_lines: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`mmpp bot` as an operator runs it (bot.env in `folder`, its output in `folder/bot.log`),
    connected to the stand-in; yielded once its gateway session is up, killed after. DEVICE and
    DTYPE are left to their shipped `auto` unless `env_lines` says otherwise."""
    values = {
        "DISCORD_TOKEN": standin.token, "DISCORD_API_BASE": standin.api_base,
        "DISCORD_GATEWAY_URL": standin.gateway_url, "DISCORD_CDN_BASE": standin.cdn_base,
        "MODEL_DIR": str(model_dir), **env_lines,
    }
    (folder / "bot.env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "DATABASE_", "MODEL_DIR"))}
    async with bot_subprocess(
        standin, [sys.executable, "-m", "mmpp.cli", "bot"], cwd=folder, env=env, ready_timeout=ready_timeout
    ) as bot:
        yield bot
