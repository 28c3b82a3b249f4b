"""Starting and stopping the whole bot: settings → database → engine → queue → Discord.

A start that cannot work stops with one clear line (`BotStartError` or another `UserFacingError`);
a stop drains the queue first, so nobody is left with a "thinking…" reply that never ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from mmpp.bot.app.discord_endpoints import apply_endpoints
from mmpp.bot.app.invite import TokenRejected, check_token, print_invite, read_token, unreachable
from mmpp.bot.app.readiness import serve_metrics
from mmpp.bot.app.sharding import own_jobs, shard_options
from mmpp.errors import UserFacingError
from mmpp.health import HealthServer
from mmpp.logs import log_event, register_secret
from mmpp.settings import Settings

if TYPE_CHECKING:
    from mmpp.bot.app.app import MMPPBot
    from mmpp.bot.services import Services
    from mmpp.inference.queue.setup import EngineWrapper

# Only what the token check needs is imported above: the bot, its cogs, the database and the queue come
# in `start()` after Discord accepted the token, so a wrong token is answered within a second or two,
# and the ML stack (torch, diffusers) loads only in a bot that draws, once it knows the token works.

log = logging.getLogger(__name__)


# How long a stop waits for replies still being written, and then for notices to open jobs.
REPLY_DRAIN_S = 10.0


class BotStartError(UserFacingError):
    code = "start_failed"


class BotRuntime:
    """One running bot. `start()` returns once the client is connecting; `stop()` is graceful."""

    def __init__(
        self, settings: Settings, *, shutdown_grace_s: float | None = None,
        client_options: dict[str, Any] | None = None, wrap_engine: EngineWrapper | None = None,
    ) -> None:
        self.settings = settings
        self.shutdown_grace_s = settings.shutdown_grace_s if shutdown_grace_s is None else shutdown_grace_s
        # Passed to discord.py's client, e.g. a short `guild_ready_timeout` in tests.
        self.client_options = client_options or {}
        # Around each engine this bot loads: the recorder tests and benchmarks watch and hold calls with.
        self.wrap_engine = wrap_engine
        self.bot: MMPPBot | None = None
        self.services: Services | None = None
        self._client_task: asyncio.Task[None] | None = None
        # /metrics, /healthz, /readyz (METRICS_PORT): up from before the models load to the stop's end.
        self.health: HealthServer | None = None

    @property
    def token(self) -> str:
        try:
            return read_token(self.settings)
        except TokenRejected as exc:
            raise BotStartError(exc.message) from None

    async def start(self) -> None:
        token = self.token
        register_secret(token)
        settings = self.settings
        try:
            apply_endpoints(
                settings.discord_api_base, settings.discord_gateway_url, cdn_base=settings.discord_cdn_base
            )
        except ValueError as exc:
            raise BotStartError(f"{exc}. Fix it in {settings.env_file_name}.") from None
        shard_options(settings)  # a wrong SHARD_IDS stops the start before anything loads
        # First of all, the call to Discord: a wrong token must not wait for the database, the ML stack,
        # a 15 GB download or a model load.
        try:
            identity = await check_token(token)
        except TokenRejected as exc:
            raise BotStartError(exc.message) from None
        if settings.log_format == "json":
            log_event(log, logging.INFO, "token accepted", user=identity.user, invite=identity.invite_url,
                      user_install=identity.user_install_url)
        else:
            log_event(log, logging.INFO, "token accepted", user=identity.user)
            print_invite(identity)  # the link alone on its line, where a terminal makes it clickable
        from prometheus_client import CollectorRegistry

        from mmpp.bot.app.app import MMPPBot
        from mmpp.bot.db import Repository, open_database
        from mmpp.bot.services import Services
        from mmpp.bot.stores import face_store, result_store
        from mmpp.bot.uploads.decoding import Decoder
        from mmpp.bot.uploads.download import Downloader
        from mmpp.inference.download import model_cache
        from mmpp.inference.model_files import image_limits
        from mmpp.inference.queue.devices import resolve_devices
        from mmpp.inference.queue.setup import open_queue

        if settings.queue_backend == "local" or settings.devices:
            resolve_devices(settings)  # a DEVICE this machine lacks stops the start before the database
        database = await open_database(settings.database_url, upgrade=True)
        try:
            if settings.metrics_port is not None:
                # Before the models: /healthz answers through a first start's download, /readyz says "starting".
                try:
                    self.health = serve_metrics(self, CollectorRegistry())
                except OSError as exc:
                    raise BotStartError(f"Cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: "
                                        f"{exc.strerror or exc}. Pick another METRICS_PORT.") from None
                log_event(log, logging.INFO, "metrics served", url=self.health.url)
            queue = await open_queue(settings, wrap_engine=self.wrap_engine)
            catalog = queue.catalog
            # A bot.env written before a built-in was renamed may still name it the old way.
            settings = settings.model_copy(update={"default_style": catalog.canonical(settings.default_style)})
            if settings.default_style not in catalog:
                fallback = catalog.names()[0]
                log_event(log, logging.WARNING, "default style missing, using another",
                          wanted=settings.default_style, using=fallback)
                settings = settings.model_copy(update={"default_style": fallback})
            repo = Repository.from_settings(database, settings)
            await repo.sync_styles(catalog.styles.values(), renamed=catalog.renamed())
            if self.health is not None:
                self.health.registry = queue.metrics.registry  # the queue's and the bot's metrics from now on
        except BaseException:
            self._close_health()
            await database.dispose()
            raise
        faces = face_store(settings.reroll_ttl_s, max_bytes=settings.reroll_cache_mb * 2**20)
        self.services = Services(
            settings, queue, database, repo, faces, Downloader(settings),
            Decoder(image_limits(settings), settings.max_concurrent_decodes),
            result_store(settings.reroll_ttl_s, max_bytes=settings.reroll_cache_mb * 2**20),
        )
        await self.services.decoder.start()
        self.bot = MMPPBot(self.services, **shard_options(settings), **self.client_options)
        # Where everything lives, in the line an operator reads first when something is not where they expected.
        log_event(log, logging.INFO, "starting", env_file=settings.env_file_words(), database=database.display_url,
                  model_cache=str(settings.model_dir or model_cache()), styles=",".join(catalog.names()),
                  device=str(getattr(queue.preparer, "device", "?")))
        self._client_task = asyncio.create_task(self._run_client(token), name="mmpp-discord")

    async def _run_client(self, token: str) -> None:
        assert self.bot is not None
        try:
            await self.bot.start(token)
        except discord.LoginFailure:
            raise BotStartError("Discord refused the token. Copy it again from the Developer Portal into bot.env.")\
                from None
        except discord.PrivilegedIntentsRequired:
            raise BotStartError("Discord refused the connection: the bot asks for an intent it is not allowed.")\
                from None
        except (aiohttp.ClientError, OSError) as exc:
            # Only the first connection lands here: once connected, discord.py reconnects by itself.
            raise BotStartError(unreachable(exc)) from None
        except discord.HTTPException as exc:
            raise BotStartError(f"Discord answered {exc.status} while the bot was logging in: {exc.text}") from None

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until READY; re-raises why the client stopped if it stopped first."""
        assert self.bot is not None and self._client_task is not None
        try:
            async with asyncio.timeout(timeout):
                # Polled: `wait_until_ready()` raises until `login()` has run inside the client task.
                while not self.bot.is_ready():
                    if self._client_task.done():
                        self._client_task.result()
                        raise BotStartError("The Discord connection closed before the bot was ready.")
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise BotStartError(f"Not connected to Discord after {timeout:.0f} seconds.") from None

    async def run_until(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set or the client ends; a client that fails re-raises why."""
        assert self._client_task is not None
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, self._client_task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._client_task.done():
            self._client_task.result()

    async def stop(self) -> None:
        """Graceful and bounded: running portraits get the grace time, everyone else waiting is told
        their portrait was not made, and their log rows are closed; then the connection goes."""
        if self.services is None:
            self._close_health()
            return
        services = self.services
        log_event(log, logging.INFO, "shutting down")
        # Waiting jobs hear "restarting" at once; running ones get the grace time to finish.
        await services.queue.shutdown(self.shutdown_grace_s)  # logs its own report
        # Let replies of finished jobs, and answers to requests still being prepared, reach Discord.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REPLY_DRAIN_S):
                while services.writes.busy or services.admissions.busy:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        # Log writes a busy database refused get the same time to land.
        await services.writes.drain(REPLY_DRAIN_S)
        if self.bot is not None and self.bot.is_ready():
            # Whatever is still open (a reply stuck in Discord's retries, say) is told another way;
            # members who have their answer (only its write failed) are not told anything.
            left_open = [
                job for job in own_jobs(services.settings, await services.repo.open_jobs())
                if job.log_id not in services.writes.answered
            ]
            if left_open:
                from mmpp.bot.app.recovery import close_open_jobs

                await close_open_jobs(self.bot, services.repo, left_open, why="stop", timeout_s=REPLY_DRAIN_S)
        await services.downloader.close()
        services.decoder.close()
        if self.bot is not None:
            await self.bot.close()
        if self._client_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._client_task
        self.services.faces.clear()
        self.services.results.clear()
        await self.services.database.dispose()
        self.services = None
        self._close_health()

    def _close_health(self) -> None:
        if self.health is not None:
            self.health.close()
            self.health = None


async def run_bot(settings: Settings) -> int:
    """`mmpp bot`: run until Ctrl-C or SIGTERM, then shut down gracefully."""
    runtime = BotRuntime(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
        await runtime.run_until(stop)
    finally:
        await runtime.stop()
    return 0
